"""The desk's cookies, HttpOnly and SameSite=Strict. Over https they are `__Host-` cookies (Secure, Path=/, no
Domain), which a browser accepts from the desk's own host alone: a sibling subdomain, which may set cookies for the
whole parent domain, can neither plant a session or pre-session of its choosing (whose CSRF token it would know) nor
overwrite the desk's. Over http://localhost, where that prefix's Secure is not to be had, plain ones under the desk's
path."""

from starlette.responses import Response

from mcp_server.desk.config import DeskConfig
from mcp_server.desk.sessions import PRE_COOKIE, SESSION_COOKIE


class Cookies:
    def __init__(self, config: DeskConfig) -> None:
        self.secure = config.secure
        prefix = "__Host-" if self.secure else ""
        self.session, self.pre = prefix + SESSION_COOKIE, prefix + PRE_COOKIE
        self.path = "/" if self.secure else config.path

    def set(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path=self.path, httponly=True, samesite="strict", secure=self.secure
        )

    def delete(self, response: Response, name: str) -> None:
        response.delete_cookie(name, path=self.path, httponly=True, samesite="strict", secure=self.secure)
