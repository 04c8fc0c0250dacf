"""Every answer a test gets, checked against what /api/openapi.json says of its route, method and status.

``ResponseChecker.install(app)`` adds an ``after_request`` hook to a test's
app (tests/conftest.py does it for every ``app`` fixture): an answer whose
status the document does not list for that operation, or whose JSON does not
match the documented schema, is recorded as a problem, and the test fails.
Requests no route matched (404/405 from routing) are no operation's.
While a route lacks ``@documented`` the document cannot be built: then only
tests/controller/test_openapi.py fails (naming the route), the other tests run unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Flask, request
from jsonschema import Draft202012Validator

from controller.api.openapi import Undocumented, is_page, openapi_document, openapi_path


@dataclass
class ResponseChecker:
    document: dict[str, Any]
    active: bool = True
    problems: list[str] = field(default_factory=list)
    seen: set[tuple[str, str, int]] = field(default_factory=set)  # (METHOD, path, status)
    _validators: dict[str, Draft202012Validator] = field(default_factory=dict)

    @classmethod
    def install(cls, app: Flask) -> ResponseChecker:
        try:
            checker = cls(openapi_document(app))
        except Undocumented:
            # A route without @documented: tests/controller/test_openapi.py fails naming it; the other
            # tests still test their feature instead of all failing on the same missing declaration.
            return cls({"paths": {}, "components": {}}, active=False)

        @app.after_request
        def _check(response):
            if request.url_rule is None or request.method in ("HEAD", "OPTIONS"):
                return response
            if is_page(app, request.url_rule):  # an HTML page, the live stream, a WebSocket
                if response.mimetype == "application/json" and response.status_code < 400:
                    checker.problems.append(f"{request.method} {request.url_rule.rule} -> {response.status_code}: "
                                            "a page route answered JSON without @documented")
                return response
            checker.check(request.method, openapi_path(request.url_rule), response)
            return response

        return checker

    def check(self, method: str, path: str, response) -> None:
        where = f"{method} {path} -> {response.status_code}"
        operation = self.document["paths"].get(path, {}).get(method.lower())
        if operation is None:
            self.problems.append(f"{where}: the operation is not in the document")
            return
        self.seen.add((method, path, response.status_code))
        documented = operation["responses"].get(str(response.status_code))
        if documented is None:
            self.problems.append(f"{where}: status not documented (documented: {', '.join(operation['responses'])})")
            return
        if "content" not in documented:  # a redirect: no body to check
            return
        media = response.mimetype
        if media not in documented["content"]:
            self.problems.append(f"{where}: answered {media}, documented {', '.join(documented['content'])}")
            return
        if media != "application/json":
            return
        errors = sorted(self._validator(documented["content"][media]["schema"]).iter_errors(response.get_json()),
                        key=lambda e: list(e.absolute_path))
        for error in errors[:3]:
            at = "/".join(str(part) for part in error.absolute_path) or "(body)"
            self.problems.append(f"{where}: {at}: {error.message[:300]}")

    def _validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        key = repr(schema)
        if key not in self._validators:
            # The document's components ride along, so "#/components/schemas/X" resolves inside it.
            self._validators[key] = Draft202012Validator({**schema, "components": self.document["components"]})
        return self._validators[key]

    def take_problems(self) -> list[str]:
        found, self.problems = self.problems, []
        return found
