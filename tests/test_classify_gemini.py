"""google.classify against the responses quoted in shared/reference/gemini-api.md.

Bodies are the reference's own, verbatim, except where it trimmed base64: success cases get
real (tiny) image bytes in their place, built with Pillow.
"""

import base64
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from nbbatch.errors import (
    BlockedError,
    ExitCode,
    FatalError,
    InvalidRequestError,
    ProviderError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
)
from nbbatch.providers.base import GeneratedImage
from nbbatch.providers.google import classify
from nbbatch.providers.wire import redactor

KEY = "AIzaSyTEST-key_0123456789abcdefghijklm"


def image_bytes(fmt: str, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), color).save(buffer, fmt)
    return buffer.getvalue()


PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG", "blue")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def run(status, body, headers=None, **kw):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return classify(
        status, headers or {}, raw, provider="gemini", redact=redactor(KEY), **kw
    )


# --- Reference §4: error bodies ------------------------------------------------------------

HELP = {"@type": "type.googleapis.com/google.rpc.Help",
        "links": [{"description": "Learn more about Gemini API quotas",
                   "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}

# vercel/ai google-429-retry-info.json
QUOTA_PER_MINUTE = {
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      { "@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [ { "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier" } ] },
      { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.4s" }
    ]
  }
}  # fmt: skip

# python-genai PR #2114's pair: message "Please retry in 58.934310785s." with retryDelay "58s",
# details in the newer [Help, QuotaFailure, RetryInfo] order.
QUOTA_58S = {"error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/rate-limit. \n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_paid_tier_requests, limit: 20, model: gemini-3-pro-image\nPlease retry in 58.934310785s.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
        HELP,
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
                         "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "58s"},
    ]}}

# google-gemini/gemini-cli#8437 (its truncated Help entry completed with the typical one)
QUOTA_PER_DAY = {"error": {"code": 429,
  "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
  "status": "RESOURCE_EXHAUSTED",
  "details": [
    {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
     "violations": [
       {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
        "quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash-preview-image"}},
       {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash-preview-image"}},
       {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        "quotaDimensions": {"model": "gemini-2.5-flash-preview-image", "location": "global"}}]},
    HELP]}}  # fmt: skip

# continuedev/continue#12749: "limit: 0" in the message, only per-minute quota ids.
QUOTA_LIMIT_ZERO = {"error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/rate-limit. \n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-flash-preview-image\n* ...\nPlease retry in 59.953424872s.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
        HELP,
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "59s"},
    ]}}

# gke-labs/gemini-for-kubernetes-development#1215: a Help detail only
QUOTA_HELP_ONLY = {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                             "status": "RESOURCE_EXHAUSTED", "details": [HELP]}}
VERTEX_429 = {"error": {"code": 429, "message": "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.", "status": "RESOURCE_EXHAUSTED"}}

OVERLOADED = {"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}
INTERNAL = {"error": {"code": 500, "message": "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting", "status": "INTERNAL"}}
PROXY_502 = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center>"
             b"<h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
DEADLINE_504 = {"error": {"code": 504, "message": "Deadline expired before operation could complete.", "status": "DEADLINE_EXCEEDED"}}

API_KEY_INVALID = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
    "details": [
      {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
       "metadata": {"service": "generativelanguage.googleapis.com"}},
      {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
       "message": "API key not valid. Please pass a valid API key."}]}}  # fmt: skip
UNKNOWN_FIELD = {"error": {"code": 400, "message": "Invalid JSON payload received. Unknown name \"responseModalities\" at 'generation_config': Cannot find field.", "status": "INVALID_ARGUMENT"}}
UNKNOWN_FIELD_BOGUS = {"error": {"code": 400, "message": "Invalid JSON payload received. Unknown name 'bogus' at 'generation_config'.", "status": "INVALID_ARGUMENT"}}
MISSING_SIGNATURE = json.loads('{"error":{"code":400,"message":"Image part is missing a thought_signature in content position 3, part position 1. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures#model-behavior for more details.","status":"INVALID_ARGUMENT"}}')

SERVICE_DISABLED = {
    "error": {
      "code": 403,
      "message": "Generative Language API has not been used in project 12345678 before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/overview?project=12345678 then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry.",
      "status": "PERMISSION_DENIED",
      "details": [
        { "@type": "type.googleapis.com/google.rpc.Help", "links": [ { "description": "Google developers console API activation", "url": "https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/overview?project=12345678" } ] },
        { "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED", "domain": "googleapis.com", "metadata": { "service": "generativelanguage.googleapis.com", "consumer": "projects/12345678" } }
      ]
    }
}  # fmt: skip
LEAKED_KEY = {"error": {"code": 403, "message": "Your API key was reported as leaked. Please use another API key.", "status": "PERMISSION_DENIED"}}
NO_KEY = {"error": {"code": 403, "message": "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", "status": "PERMISSION_DENIED"}}
UNKNOWN_MODEL = {
    "error": {
      "code": 404,
      "message": "models/gemini-5.0-flash is not found for API version v1, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.",
      "status": "NOT_FOUND",
      "details": [
        { "@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": "[ORIGINAL ERROR] generic::not_found: ..." },
        { "@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": "models/gemini-5.0-flash is not found for API version v1, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods." }
      ]
    }
}  # fmt: skip
VERTEX_401 = {"error": {"code": 401, "message": "API keys are not supported by this API. Expected OAuth2 access token or other authentication credentials that assert a principal. See https://cloud.google.com/docs/authentication", "status": "UNAUTHENTICATED",
    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "CREDENTIALS_MISSING", "domain": "googleapis.com",
      "metadata": {"service": "aiplatform.googleapis.com", "method": "google.cloud.aiplatform.v1beta1.PredictionService.GenerateContent"}}]}}  # fmt: skip

# --- Reference §3.2: 200 responses ---------------------------------------------------------

IMAGE_SAFETY = {
  "candidates": [
    {
      "content": { "parts": None },
      "finishReason": "IMAGE_SAFETY",
      "finishMessage": "Unable to show the generated image. The image was filtered out because it violated Google's [Generative AI Prohibited Use policy](https://policies.google.com/terms/generative-ai/use-policy). You will not be charged for blocked images. Try rephrasing the prompt. If you think this was an error, [send feedback](https://ai.google.dev/gemini-api/docs/troubleshooting).",
      "index": 0
    }
  ],
  "promptFeedback": { "safetyRatings": None },
  "usageMetadata": {
    "promptTokenCount": 464,
    "candidatesTokenCount": 0,
    "totalTokenCount": 755,
    "thoughtsTokenCount": 291,
    "promptTokensDetails": [
      { "modality": "TEXT", "tokenCount": 206 },
      { "modality": "IMAGE", "tokenCount": 258 }
    ]
  },
  "modelVersion": "gemini-3-pro-image-preview",
  "responseId": "BK54aczcOKL***PsqekqA4"
}  # fmt: skip
PROMPT_BLOCKED = {
  "promptFeedback": { "blockReason": "PROHIBITED_CONTENT" },
  "usageMetadata": {
    "promptTokenCount": 9,
    "totalTokenCount": 9,
    "promptTokensDetails": [ { "modality": "TEXT", "tokenCount": 9 } ],
    "serviceTier": "standard"
  },
  "modelVersion": "gemini-3.1-flash-image-preview",
  "responseId": "FHGPatmJMfqI1MkP28uN-Qg"
}  # fmt: skip
PROMPT_BLOCKED_OTHER = {"promptFeedback": {"blockReason": "OTHER"}, "modelVersion": "gemini-3-pro-image-preview"}
NO_IMAGE = {
  "candidates": [ { "content": {}, "finishReason": "NO_IMAGE", "index": 0 } ],
  "usageMetadata": {
    "promptTokenCount": 9,
    "totalTokenCount": 9,
    "promptTokensDetails": [ { "modality": "TEXT", "tokenCount": 9 } ],
    "serviceTier": "standard"
  },
  "modelVersion": "gemini-3.1-flash-image-preview",
  "responseId": "yzOraue2AfW1_PUPqru3sQY"
}  # fmt: skip
TEXT_ONLY = {
    "responseId": "6VFkaIDwEPXVjMcP4-XW6Qo",
    "usageMetadata": { "totalTokenCount": 848, "promptTokensDetails": [ { "modality": "TEXT", "tokenCount": 8 } ], "thoughtsTokenCount": 829, "candidatesTokenCount": 11, "promptTokenCount": 8 },
    "candidates": [ { "content": { "role": "model", "parts": [ { "text": "AI learns patterns from data to make decisions or predictions." } ] }, "finishReason": "STOP", "index": 0 } ],
    "modelVersion": "gemini-2.5-flash"
}  # fmt: skip
IMAGE_OTHER = {"candidates": [{"content": {}, "finishReason": "IMAGE_OTHER", "index": 0}],
               "modelVersion": "gemini-3-pro-image", "responseId": "imgOther000000000000001"}
OTHER = {"candidates": [{"content": {}, "finishReason": "OTHER", "index": 0}]}
THOUGHTS_ONLY = {
  "candidates": [ { "content": { "role": "model", "parts": [
      { "text": "**Imagining the Scene**\n\nI'm currently picturing the scene.", "thought": True } ] } } ],
  "usageMetadata": { "trafficType": "ON_DEMAND" },
  "modelVersion": "gemini-3-pro-image-preview",
  "createTime": "2026-01-27T03:51:36.593894Z",
  "responseId": "SDZ4aeafJLTWsbwP5ui6uA4"
}  # fmt: skip


def success_a(data: str):
    """gemini-3.1-flash-image success (vercel/ai fixture), image data substituted."""
    return {
      "candidates": [
        {
          "content": {
            "parts": [
              {
                "inlineData": {
                  "mimeType": "image/jpeg",
                  "data": data
                },
                "thoughtSignature": "<redacted thought signature; length=597616>"
              }
            ],
            "role": "model"
          },
          "finishReason": "STOP",
          "index": 0
        }
      ],
      "usageMetadata": {
        "promptTokenCount": 10,
        "candidatesTokenCount": 1392,
        "totalTokenCount": 1402,
        "promptTokensDetails": [ { "modality": "TEXT", "tokenCount": 10 } ],
        "candidatesTokensDetails": [ { "modality": "IMAGE", "tokenCount": 1120 } ],
        "serviceTier": "standard"
      },
      "modelVersion": "gemini-3.1-flash-image",
      "responseId": "dTOras2iGqLc-sAPiO2BiAw"
    }  # fmt: skip


def success_b(data: str):
    """gemini-2.5-flash-image, text + image (a proxy's doc quoting upstream)."""
    return {
      "candidates": [
        {
          "content": {
            "parts": [
              { "text": "`" },
              { "inlineData": { "mimeType": "image/png", "data": data } }
            ],
            "role": "model"
          },
          "finishReason": "STOP",
          "index": 0
        }
      ],
      "usageMetadata": {
        "promptTokenCount": 264,
        "candidatesTokenCount": 1291,
        "totalTokenCount": 1555,
        "promptTokensDetails": [
          { "modality": "TEXT", "tokenCount": 6 },
          { "modality": "IMAGE", "tokenCount": 258 }
        ],
        "candidatesTokensDetails": [ { "modality": "IMAGE", "tokenCount": 1290 } ],
        "serviceTier": "standard"
      },
      "modelVersion": "gemini-2.5-flash-image",
      "responseId": "BgtOas67BpOJqtsP3pXGqQU"
    }  # fmt: skip


def success_c(data: str):
    """gemini-3-pro-image-preview with an (emptied) signature and thought tokens."""
    return {
    "candidates": [
    {
    "content": {
    "parts": [
    {
    "inlineData": {
    "mimeType": "image/jpeg",
    "data": data
    },
    "thoughtSignature": ""
    }
    ],
    "role": "model"
    },
    "finishReason": "STOP",
    "index": 0
    }
    ],
    "usageMetadata": {
    "promptTokenCount": 32,
    "candidatesTokenCount": 1772,
    "totalTokenCount": 2552,
    "promptTokensDetails": [ { "modality": "TEXT", "tokenCount": 32 } ],
    "candidatesTokensDetails": [ { "modality": "IMAGE", "tokenCount": 1120 } ],
    "thoughtsTokenCount": 748
    },
    "modelVersion": "gemini-3-pro-image-preview",
    "responseId": "DOd6afWPNZfjjrEPpZ3c0AM"
    }  # fmt: skip


def vertex_h(data: str):
    """Vertex unary image response (Firebase test data), safety ratings trimmed."""
    return {
      "candidates": [
        {
          "content": { "role": "model", "parts": [ { "inlineData": { "mimeType": "image/png", "data": data } } ] },
          "finishReason": "STOP",
          "safetyRatings": [
            { "category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE", "probabilityScore": 0.00039444832, "severity": "HARM_SEVERITY_NEGLIGIBLE" },
            {}, {}, {}, {}
          ]
        }
      ],
      "usageMetadata": {
        "promptTokenCount": 15,
        "candidatesTokenCount": 258,
        "totalTokenCount": 273,
        "trafficType": "ON_DEMAND",
        "promptTokensDetails": [ { "modality": "TEXT", "tokenCount": 15 } ],
        "candidatesTokensDetails": [ { "modality": "IMAGE", "tokenCount": 258 } ]
      },
      "modelVersion": "gemini-2.0-flash-exp",
      "createTime": "2025-05-01T18:48:57.671056Z",
      "responseId": "GcITaND6KPSbhMIPgoG2-Q0"
    }  # fmt: skip


# --- The table ------------------------------------------------------------------------------

LOCATION = {"error": {"code": 400, "message": "User location is not supported for the API use.", "status": "FAILED_PRECONDITION"}}
CANCELLED = {"error": {"code": 499, "message": "The operation was cancelled.", "status": "CANCELLED"}}

E = pytest.param
ERROR_CASES = [
    # 429: per-minute, retry after RetryInfo; per-day or limit 0: quota exhausted
    E(429, QUOTA_PER_MINUTE, {}, TransientError, {"overload": True, "retry_after": 34.4}, id="429-per-minute-34.4s"),
    E(429, QUOTA_58S, {}, TransientError, {"overload": True, "retry_after": 58.0}, id="429-retry-58s"),
    E(429, QUOTA_PER_DAY, {}, QuotaExhaustedError, {}, id="429-per-day"),
    E(429, QUOTA_LIMIT_ZERO, {}, QuotaExhaustedError, {}, id="429-limit-0"),
    E(429, QUOTA_HELP_ONLY, {}, TransientError, {"overload": True, "retry_after": None}, id="429-help-only"),
    E(429, VERTEX_429, {}, TransientError, {"overload": True, "retry_after": None}, id="429-vertex"),
    E(429, QUOTA_HELP_ONLY, {"Retry-After": "7"}, TransientError, {"retry_after": 7.0}, id="429-retry-after-header"),
    E(429, QUOTA_HELP_ONLY, {"retry-after-ms": "1500"}, TransientError, {"retry_after": 1.5}, id="429-retry-after-ms"),
    E(429, QUOTA_PER_MINUTE, {"Retry-After": "99"}, TransientError, {"retry_after": 34.4}, id="429-body-delay-wins"),
    # 5xx and 408: transient; 503 is the overload signal
    E(503, OVERLOADED, {}, TransientError, {"overload": True, "message": "The model is overloaded. Please try again later."}, id="503-overloaded"),
    E(500, INTERNAL, {}, TransientError, {"overload": False, "possibly_billed": False}, id="500-internal"),
    E(502, PROXY_502, {}, TransientError, {"overload": False, "message": "HTTP 502 Bad Gateway (HTML page: 502 Bad Gateway)"}, id="502-proxy-html"),
    E(504, DEADLINE_504, {}, TransientError, {"overload": False}, id="504"),
    E(408, b"", {}, TransientError, {"overload": False, "message": "HTTP 408 Request Timeout with an empty body"}, id="408-empty"),
    E(503, b"upstream connect error or disconnect/reset before headers", {"Retry-After": "3"}, TransientError, {"overload": True, "retry_after": 3.0}, id="503-text-body"),
    E(599, b"", {}, TransientError, {}, id="other-5xx"),
    # 400: a rejected key is fatal; anything else fails the image
    E(400, API_KEY_INVALID, {}, FatalError, {"exit_code": ExitCode.AUTH}, id="400-api-key-invalid"),
    # The caller is refused, not the request: every image would fail alike, so stop at once.
    E(400, LOCATION, {}, FatalError, {"exit_code": ExitCode.AUTH}, id="400-user-location"),
    # Seen under heavy load: the server gave up on the request; another try is fine.
    E(499, CANCELLED, {}, TransientError, {"overload": False}, id="499-cancelled"),
    E(400, UNKNOWN_FIELD, {}, InvalidRequestError, {}, id="400-unknown-field"),
    E(400, UNKNOWN_FIELD_BOGUS, {}, InvalidRequestError, {}, id="400-unknown-field-bogus"),
    E(400, MISSING_SIGNATURE, {}, InvalidRequestError, {}, id="400-missing-thought-signature"),
    E(422, b"", {}, InvalidRequestError, {}, id="other-4xx"),
    # 401/403/404: stop the run
    E(403, SERVICE_DISABLED, {}, FatalError, {"exit_code": ExitCode.AUTH}, id="403-service-disabled"),
    E(403, LEAKED_KEY, {}, FatalError, {"exit_code": ExitCode.AUTH, "message": "Your API key was reported as leaked. Please use another API key."}, id="403-leaked-key"),
    E(403, NO_KEY, {}, FatalError, {"exit_code": ExitCode.AUTH}, id="403-no-key"),
    E(401, VERTEX_401, {}, FatalError, {"exit_code": ExitCode.AUTH}, id="401-vertex"),
    E(404, UNKNOWN_MODEL, {}, UnknownModelError, {"exit_code": ExitCode.USAGE}, id="404-unknown-model"),
    E(307, b"", {"Location": "https://elsewhere.example/v1beta/x"}, FatalError, {}, id="3xx-redirect"),
    # 200 without an image: blocked, or transient
    E(200, IMAGE_SAFETY, {}, BlockedError, {"request_id": "BK54aczcOKL***PsqekqA4"}, id="image-safety"),
    E(200, PROMPT_BLOCKED, {}, BlockedError, {"request_id": "FHGPatmJMfqI1MkP28uN-Qg"}, id="prompt-blocked-prohibited"),
    E(200, PROMPT_BLOCKED_OTHER, {}, BlockedError, {}, id="prompt-blocked-other"),
    E(200, NO_IMAGE, {}, TransientError, {"possibly_billed": False, "overload": False, "request_id": "yzOraue2AfW1_PUPqru3sQY"}, id="no-image"),
    E(200, TEXT_ONLY, {}, TransientError, {"overload": False}, id="text-only-stop"),
    E(200, IMAGE_OTHER, {}, TransientError, {}, id="image-other"),
    E(200, OTHER, {}, TransientError, {}, id="finish-other"),
    E(200, THOUGHTS_ONLY, {}, TransientError, {}, id="thoughts-only"),
    E(200, {"modelVersion": "gemini-3-pro-image"}, {}, TransientError, {}, id="no-candidates"),
    # 200 whose body or image is damaged: transient
    E(200, json.dumps(success_a(b64(JPEG))).encode()[:150], {}, TransientError, {"possibly_billed": True}, id="truncated-json"),
    E(200, b"<!DOCTYPE html><html><title>Sign in</title></html>", {}, TransientError, {"possibly_billed": False, "message": "HTTP 200 OK (HTML page: Sign in)"}, id="200-html"),
    E(200, b"", {}, TransientError, {"message": "HTTP 200 OK with an empty body"}, id="200-empty"),
    E(200, success_b("iadfdfdsfsfewfdsfefefdsfsdfCC"), {}, TransientError, {"possibly_billed": True}, id="reference-b-data-bad-base64"),
    E(200, success_c("/9j/4AAQSkZJRgABAQEBLAEsAAD/6xdmSlAAAQAAAAEAABdcanVtYgAAAB5q"), {}, TransientError, {"possibly_billed": True}, id="reference-c-data-cut-jpeg"),
    E(200, success_a(b64(b"hello, not an image")), {}, TransientError, {"possibly_billed": True}, id="non-image-bytes"),
    E(200, success_a("not base64!!"), {}, TransientError, {"possibly_billed": True}, id="invalid-base64"),
    E(200, {"error": {"code": 503, "message": "The model is overloaded."}}, {}, TransientError, {"overload": True}, id="error-inside-200"),
]


@pytest.mark.parametrize(("status", "body", "headers", "outcome", "attrs"), ERROR_CASES)
def test_error_outcomes(status, body, headers, outcome, attrs):
    with pytest.raises(ProviderError) as caught:
        run(status, body, headers)
    error = caught.value
    assert type(error) is outcome, error.message
    assert (error.provider, error.status) == ("gemini", status)
    assert error.message and len(error.message) <= 500 and "\n" not in error.message
    for name, value in attrs.items():
        assert getattr(error, name) == value, name


def test_blocked_keeps_the_finish_message():
    with pytest.raises(BlockedError) as caught:
        run(200, IMAGE_SAFETY)
    assert caught.value.message.startswith("image blocked (IMAGE_SAFETY): Unable to show")
    assert caught.value.usage == IMAGE_SAFETY["usageMetadata"]


def test_prompt_block_names_the_reason():
    with pytest.raises(BlockedError, match="PROHIBITED_CONTENT"):
        run(200, PROMPT_BLOCKED)


def test_rejected_key_message_names_the_variable():
    with pytest.raises(FatalError) as caught:
        run(400, API_KEY_INVALID, key_env="GEMINI_API_KEY")
    assert type(caught.value) is FatalError
    assert caught.value.message == (
        "API key not valid. Please pass a valid API key. Check GEMINI_API_KEY."
    )


def test_quota_message_names_the_quota():
    with pytest.raises(QuotaExhaustedError, match="GenerateRequestsPerDayPerProjectPerModel"):
        run(429, QUOTA_PER_DAY)
    with pytest.raises(QuotaExhaustedError, match="limit: 0"):
        run(429, QUOTA_LIMIT_ZERO)


def test_text_only_answer_is_quoted_in_the_message():
    with pytest.raises(TransientError, match=r"STOP.*AI learns patterns"):
        run(200, TEXT_ONLY)


def test_request_id_falls_back_to_the_header():
    with pytest.raises(TransientError) as caught:
        run(503, OVERLOADED, {"X-Request-Id": "req-123"})
    assert caught.value.request_id == "req-123"


# --- Success ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("body", "data", "mime", "model", "request_id", "text"),
    [
        E(success_a(b64(JPEG)), JPEG, "image/jpeg", "gemini-3.1-flash-image", "dTOras2iGqLc-sAPiO2BiAw", None, id="a"),
        E(success_b(b64(PNG)), PNG, "image/png", "gemini-2.5-flash-image", "BgtOas67BpOJqtsP3pXGqQU", "`", id="b"),
        E(success_c(b64(JPEG)), JPEG, "image/jpeg", "gemini-3-pro-image-preview", "DOd6afWPNZfjjrEPpZ3c0AM", None, id="c"),
        E(vertex_h(b64(PNG)), PNG, "image/png", "gemini-2.0-flash-exp", "GcITaND6KPSbhMIPgoG2-Q0", None, id="vertex-h"),
        # declared JPEG, received PNG: named after the bytes
        E(success_a(b64(PNG)), PNG, "image/png", "gemini-3.1-flash-image", "dTOras2iGqLc-sAPiO2BiAw", None, id="a-mislabelled"),
    ],
)
def test_success_shapes(body, data, mime, model, request_id, text):
    image = run(200, body)
    assert image == GeneratedImage(
        data=data, mime_type=mime, model=model, usage=body["usageMetadata"],
        request_id=request_id, text=text,
    )


def test_thought_images_are_skipped_and_the_last_image_is_kept():
    # The shape of the official thought-signature illustration (snake_case, as written there).
    thought, step1, final = image_bytes("PNG", "gray"), image_bytes("PNG", "green"), JPEG
    body = {"candidates": [{"content": {"parts": [
        {"inline_data": {"data": b64(thought), "mime_type": "image/png"}, "thought": True},
        {"text": "Here is a step-by-step guide.\n\n", "thought_signature": "<Signature_A>"},
        {"inline_data": {"data": b64(step1), "mime_type": "image/png"}, "thought_signature": "B"},
        {"text": "**Planning**", "thought": True},
        {"text": "Step 2."},
        {"inline_data": {"data": b64(final), "mime_type": "image/jpeg"}, "thought_signature": "C"},
        {"inline_data": {"data": b64(thought), "mime_type": "image/png"}, "thought": True},
    ]}, "finishReason": "STOP"}]}
    image = run(200, body, model="gemini-3-pro-image")
    assert (image.data, image.mime_type) == (final, "image/jpeg")
    assert image.text == "Here is a step-by-step guide.\n\nStep 2."
    assert image.model == "gemini-3-pro-image"  # no modelVersion: the requested model


def test_snake_case_response():
    body = {
        "candidates": [{"content": {"parts": [
            {"inline_data": {"mime_type": "image/png", "data": b64(PNG)}}]},
            "finish_reason": "STOP"}],
        "usage_metadata": {"prompt_token_count": 3},
        "model_version": "gemini-2.5-flash-image",
        "response_id": "snake",
    }
    image = run(200, body)
    assert (image.data, image.model, image.request_id) == (PNG, "gemini-2.5-flash-image", "snake")
    assert image.usage == {"prompt_token_count": 3}


def test_url_safe_unpadded_base64_is_accepted():
    urlsafe = base64.urlsafe_b64encode(JPEG).decode().rstrip("=")
    assert run(200, success_a(urlsafe)).data == JPEG


def test_streaming_style_list_is_unwrapped():
    assert run(200, [success_a(b64(JPEG))]).data == JPEG


def test_non_image_inline_parts_are_ignored():
    body = success_b(b64(PNG))
    body["candidates"][0]["content"]["parts"].append(
        {"inlineData": {"mimeType": "text/plain", "data": b64(b"notes")}}
    )
    assert run(200, body).data == PNG


# --- Secrets ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"error": {"code": 400, "message": f"API key not valid: {KEY}",
                         "details": [{"reason": "API_KEY_INVALID"}]}}),
        (403, {"error": {"code": 403, "message": f"key={KEY} blocked"}}),
        (429, {"error": {"code": 429, "message": f"{KEY} limit: 0"}}),
        (500, f"<html><title>oops {KEY}</title></html>".encode()),
        (200, {"candidates": [{"finishReason": "NO_IMAGE", "finishMessage": KEY}]}),
        (200, {"promptFeedback": {"blockReason": KEY}}),
        (302, b""),
    ],
)
def test_key_never_appears_in_messages(status, body):
    headers = {"Location": f"https://x.example/?key={KEY}"}
    with pytest.raises(ProviderError) as caught:
        run(status, body, headers)
    assert KEY not in caught.value.message and KEY not in str(caught.value)
    assert "***" in caught.value.message


def test_url_encoded_key_is_redacted_too():
    secret = "sk-test/abc+def=="
    redact = redactor(secret)
    body = {"error": {"code": 403, "message": "bad key=sk-test%2Fabc%2Bdef%3D%3D or sk-test/abc+def=="}}
    with pytest.raises(FatalError) as caught:
        classify(403, {}, json.dumps(body).encode(), provider="gemini", redact=redact)
    assert caught.value.message == "bad key=*** or ***"


# --- Property: any JSON, any status -> GeneratedImage or ProviderError ---------------------

SCHEMA_KEYS = [
    "error", "code", "message", "status", "details", "@type", "reason", "violations", "quotaId",
    "quotaMetric", "retryDelay", "candidates", "content", "parts", "inlineData", "inline_data",
    "mimeType", "data", "text", "thought", "finishReason", "finishMessage", "promptFeedback",
    "blockReason", "usageMetadata", "modelVersion", "responseId",
]  # fmt: skip
LEAVES = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.sampled_from([
        b64(PNG), b64(JPEG), "image/png", "IMAGE_SAFETY", "NO_IMAGE", "STOP", "34.4s", "-1s",
        "API_KEY_INVALID", "GenerateRequestsPerDay", "limit: 0", KEY, "=", "",
    ])
)  # fmt: skip
JSON = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(SCHEMA_KEYS) | st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status=st.integers(100, 599) | st.sampled_from([200, 400, 429, 503]), doc=JSON)
def test_any_json_gives_an_image_or_a_provider_error(status, doc):
    try:
        result = run(status, doc)
    except ProviderError as error:
        assert isinstance(error.message, str) and KEY not in error.message
        assert error.provider == "gemini" and error.status == status
    else:
        assert isinstance(result, GeneratedImage) and result.data in (PNG, JPEG)


@settings(max_examples=200, deadline=None)
@given(status=st.integers(100, 599), body=st.binary(max_size=200))
def test_any_bytes_give_a_provider_error(status, body):
    with pytest.raises(ProviderError):
        run(status, body)
