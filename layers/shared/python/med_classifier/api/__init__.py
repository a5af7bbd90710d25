"""The HTTP API's shared parts: request/response schemas, the one error shape and its
handlers, request-body parsing, the page's headers and the merged OpenAPI document.
Powertools is allowed here (and in functions/), nowhere else in the package."""
