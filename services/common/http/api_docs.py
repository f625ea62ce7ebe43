"""The API docs under `/schema`, served whole by the service itself.

A clinic network may have no way out to the internet, so the interactive UI (Swagger UI) and its
favicon come from the `swagger-ui-bundle-v2` package (Apache-2.0, files under
`swagger_ui_bundle/vendor/`), served at `/schema/assets/`; nothing is fetched from a CDN. The
OpenAPI document itself stays at `/schema/openapi.json` (and `.yaml`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.router import Router
from litestar.static_files import create_static_files_router
from swagger_ui_bundle import swagger_ui_path

SCHEMA_PATH = "/schema"
ASSETS_PATH = f"{SCHEMA_PATH}/assets"
#: Every page that showed a UI before: old bookmarks keep working, all on the offline UI.
UI_PATHS = ("/", "/swagger", "/redoc", "/elements", "/rapidoc")


def render_plugins() -> Sequence[OpenAPIRenderPlugin]:
    return [
        SwaggerRenderPlugin(
            path=list(UI_PATHS),
            js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            css_url=f"{ASSETS_PATH}/swagger-ui.css",
            standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
        ),
        JsonRenderPlugin(),
        YamlRenderPlugin(),
    ]


def assets_router() -> Router:
    """The UI's files, public like the rest of `/schema`, outside the OpenAPI document."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[Path(str(swagger_ui_path))],
        name="api_docs_assets",
        opt={"exclude_from_auth": True},
        include_in_schema=False,
    )
