"""Deployment: `make package`, the functions' IAM policies and policy publishing.

Nothing here runs inside Lambda; :mod:`devtools.deploy.package` leaves this package out
of the deployment zip.
"""
