"""Errors of the test server, shaped like Qdrant's ``StorageError`` and auth errors.

Qdrant turns every ``StorageError`` into ``{"status": {"error": "<Display text>"}, "time": t}``
with a status code per variant (``src/actix/helpers.rs``). The constructors below reproduce the
variant prefixes (``Wrong input:``, ``Not found:`` ...) and status codes, so clients see the same
text and codes as against a real server.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error answered with Qdrant's JSON error envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AuthError(Exception):
    """An authentication failure: Qdrant answers these with a plain-text body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_input(description: str) -> ApiError:
    """``StorageError::BadInput`` -> 400."""
    return ApiError(400, f"Wrong input: {description}")


def already_exists(description: str) -> ApiError:
    """``StorageError::AlreadyExists`` -> 409 (same ``Wrong input:`` prefix)."""
    return ApiError(409, f"Wrong input: {description}")


def not_found(description: str) -> ApiError:
    """``StorageError::NotFound`` -> 404."""
    return ApiError(404, f"Not found: {description}")


def bad_request(description: str) -> ApiError:
    """``StorageError::BadRequest`` -> 400."""
    return ApiError(400, f"Bad request: {description}")


def service_error(description: str) -> ApiError:
    """``StorageError::ServiceError`` -> 500."""
    return ApiError(500, f"Service internal error: {description}")


def checksum_mismatch(expected: str, actual: str) -> ApiError:
    """``StorageError::ChecksumMismatch`` -> 400.

    Qdrant builds it as ``checksum_mismatch(<hash of the received file>, <checksum given>)``,
    so ``expected`` is the file's hash and ``actual`` the caller's value; callers keep that order.
    """
    return ApiError(400, f"Checksum mismatch: expected {expected}, actual {actual}")


def json_error(description: str) -> ApiError:
    """Body that is not valid JSON or does not match the request type -> 400."""
    return ApiError(400, f"Json deserialize error: {description}")


def query_error(description: str) -> ApiError:
    """Query string that does not match the parameter type -> 400."""
    return ApiError(400, f"Query deserialize error: {description}")


def validation_error(where: str, description: str) -> ApiError:
    """Request that parses but fails validation -> 422, as Qdrant's validator does."""
    return ApiError(422, f"Validation error in {where}: [{description}]")


def collection_not_found(name: str) -> ApiError:
    """The text Qdrant uses for a missing collection."""
    return not_found(f"Collection `{name}` doesn't exist!")


def unsupported(feature: str) -> ApiError:
    """A Qdrant feature this test server does not implement (not a Qdrant error)."""
    return bad_request(f"{feature} is not supported by the cclite.backup Qdrant test server")
