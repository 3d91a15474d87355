"""rdsvend's Chalice app. Wiring only: the app, its middleware and its blueprints."""
from __future__ import annotations

from chalice import Chalice

from chalicelib.routes.grants import grant_routes
from chalicelib.routes.http import http_routes
from chalicelib.routes.invoke import invoke_routes
from chalicelib.routes.middleware import register_middleware
from chalicelib.routes.rotation import rotation_routes
from chalicelib.routes.schedule import schedule_routes

app = Chalice(app_name="rdsvend", debug=False, configure_logs=False)
register_middleware(app)
app.register_blueprint(http_routes)
app.register_blueprint(grant_routes)
app.register_blueprint(invoke_routes)
app.register_blueprint(schedule_routes)
app.register_blueprint(rotation_routes)
