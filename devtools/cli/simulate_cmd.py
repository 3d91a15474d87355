"""``rdsvend simulate``: evaluate one request against policy files, as AWS would.

Exit 0 when allowed, 1 when denied, 2 on bad input, with one line on stderr naming the file
and the problem (never a traceback).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

import click

from chalicelib.errors import IamPolicyError
from chalicelib.iam.evaluator import evaluate
from chalicelib.iam.model import PolicyDocument, RequestContext, parse_policy

__all__ = ["simulate", "OneLineCommand", "read_policy_file", "read_policy_list_file", "parse_context"]


class OneLineCommand(click.Command):
    """A click command whose usage errors are one line (``Error: ...``), exit 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.ctx = None
            raise


class BadInput(click.ClickException):
    """Bad input: one line on stderr, exit 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:  # click's hook
        click.echo(f"rdsvend: {self.format_message()}", err=True)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a policy file") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_policy_file(path: str) -> PolicyDocument:
    """One policy document from ``path``; :class:`IamPolicyError` if malformed."""
    return parse_policy(_read(path), source=path)


def read_policy_list_file(path: str) -> list[PolicyDocument]:
    """One document, or a JSON list of documents (an SCP level), from ``path``."""
    text = _read(path)
    try:
        data = json.loads(text)
    except ValueError:
        return [parse_policy(text, source=path)]  # raises the precise JSON error
    if isinstance(data, list):
        if not data:
            raise IamPolicyError("an empty list holds no SCP", source=path)
        return [parse_policy(doc, source=f"{path}[{i}]") for i, doc in enumerate(data)]
    return [parse_policy(data, source=path)]


def parse_context(pairs: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``("aws:SourceIp=10.0.0.1", "aws:TagKeys=a", "aws:TagKeys=b")`` -> a multi-valued map."""
    context: dict[str, tuple[str, ...]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"--context '{pair}': expected KEY=VALUE")
        context[key.lower()] = context.get(key.lower(), ()) + (value,)
    return context


@click.command(cls=OneLineCommand)
@click.option("--action", required=True, help="The action, e.g. rds-db:connect.")
@click.option("--resource", required=True, help="The resource ARN.")
@click.option("--identity-policy", "identity_files", multiple=True, metavar="FILE",
              help="An identity-based policy document (repeatable).")
@click.option("--boundary", "boundary_file", metavar="FILE", help="The permissions boundary.")
@click.option("--scp", "scp_files", multiple=True, metavar="FILE",
              help="One organization level's SCPs (a document or a JSON list), root first.")
@click.option("--session-policy", "session_file", metavar="FILE", help="The session policy.")
@click.option("--context", "context_pairs", multiple=True, metavar="KEY=VALUE",
              help="A request context key; repeat a key to make it multi-valued.")
@click.option("--management-account", is_flag=True,
              help="The principal is in the organization's management account (SCPs never apply).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def simulate(action: str, resource: str, identity_files: tuple[str, ...], boundary_file: str | None,
             scp_files: tuple[str, ...], session_file: str | None, context_pairs: tuple[str, ...],
             management_account: bool, as_json: bool) -> None:
    """Would AWS allow ACTION on RESOURCE under these policies? Exit 0 allowed, 1 denied."""
    if ":" not in action or action.startswith(":") or action.endswith(":"):
        raise BadInput(f"--action '{action}': expected 'service:action'")
    if not resource:
        raise BadInput("--resource: must not be empty")
    try:
        identity = [read_policy_file(p) for p in identity_files]
        boundary = read_policy_file(boundary_file) if boundary_file else None
        scps = [read_policy_list_file(p) for p in scp_files] if scp_files else None
        session = read_policy_file(session_file) if session_file else None
    except IamPolicyError as exc:
        raise BadInput(str(exc)) from None
    request = RequestContext(action, resource, parse_context(context_pairs))
    result = evaluate(
        request,
        identity_policies=identity,
        boundary=boundary,
        scp_levels=scps,
        session_policy=session,
        management_account=management_account,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(result.explanation[0].upper() + result.explanation[1:] + ".")
    sys.exit(0 if result.allowed else 1)
