"""Stability AI's Stable Image API: POST {base_url}/v2beta/stable-image/generate/{endpoint}.

One request per call and no retries: pacing, retry and failover live in the engine. What comes
back is read in stability_answers.py.

- Models are nbbatch's names for Stability's endpoints: `stable-image-core` → /generate/core,
  `stable-image-ultra` → /generate/ultra, and `sd3.5-large`, `sd3.5-large-turbo`,
  `sd3.5-medium` → /generate/sd3 with the name in the `model` field (Stability's own names).
- The body is always multipart/form-data, even with no file: every text field is sent as a
  part without a file name, so httpx cannot fall back to a urlencoded form.
- `Accept: image/*` by default: the answer is the raw image, with `finish-reason` and
  `seed` headers. `application/json` answers {"image", "finish_reason", "seed"}; both are read.
- Stability takes nine aspect ratios. An item's ratio outside them is a manifest error when
  it names a Stability model; when Stability stands in as a backup, `nearest_ratio` picks one
  and the image's usage records both (`aspect_ratio`, `aspect_ratio_asked`).
- Reference images: only the SD3.5 endpoint takes one (image-to-image, with `strength`);
  Core and Ultra refuse them here, before anything is sent.
- Pre-flight (`check`): GET {base_url}/v1/user/balance, free, checks the key and that the
  balance covers one image; the model is checked locally (the endpoints are fixed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from nbbatch import catalog
from nbbatch.errors import (
    BlockedError,
    InvalidRequestError,
    OptionError,
    QuotaExhaustedError,
    TransientError,
    UnknownModelError,
)
from nbbatch.images import extension_for
from nbbatch.model import ProviderConfig
from nbbatch.providers.base import CheckUnavailable, GeneratedImage, ImageRequest
from nbbatch.providers.keyed import KeyedProvider
from nbbatch.providers.stability_answers import DEFAULT_KEY_ENV, classify
from nbbatch.providers.wire import (
    as_number,
    get,
    get_bytes,
    looks_like_json,
    parse_object,
    post_multipart,
)
from nbbatch.text import kind_of, one_of, shown

__all__ = ["ASPECT_RATIOS", "StabilityProvider", "check_options", "classify", "create",
           "nearest_ratio", "settle_options"]

DEFAULT_BASE_URL = "https://api.stability.ai"
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # a 1.5-megapixel PNG is a few MB, a third more in JSON
USD_PER_CREDIT = 0.01
ASPECT_RATIOS = catalog.STABILITY_RATIOS
MAX_PROMPT = 10_000  # characters, prompt and negative_prompt alike
MAX_SEED = 4_294_967_294  # 0 means "pick one at random"
Parts = list[tuple[str, tuple[str | None, bytes, str | None]]]


@dataclass(frozen=True)
class Endpoint:
    path: str  # after /v2beta/stable-image/generate/
    model_field: str | None  # the `model` form field, for the SD3.5 endpoint
    takes_image: bool
    formats: tuple[str, ...]


_SD3_FORMATS = ("png", "jpeg")  # the SD3.5 endpoint has no webp
ENDPOINTS: dict[str, Endpoint] = {
    "stable-image-core": Endpoint("core", None, False, ("png", "jpeg", "webp")),
    "stable-image-ultra": Endpoint("ultra", None, False, ("png", "jpeg", "webp")),
    "sd3.5-large": Endpoint("sd3", "sd3.5-large", True, _SD3_FORMATS),
    "sd3.5-large-turbo": Endpoint("sd3", "sd3.5-large-turbo", True, _SD3_FORMATS),
    "sd3.5-medium": Endpoint("sd3", "sd3.5-medium", True, _SD3_FORMATS),
}
STYLE_PRESETS = (
    "enhance", "anime", "photographic", "digital-art", "comic-book", "fantasy-art", "line-art",
    "analog-film", "neon-punk", "isometric", "low-poly", "origami", "modeling-compound",
    "cinematic", "3d-model", "pixel-art", "tile-texture",
)  # fmt: skip
OUTPUT_FORMATS = ("png", "jpeg", "webp")
DEFAULT_STRENGTH = 0.5  # image-to-image: 0 keeps the reference, 1 ignores it


def settle_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The provider's options with defaults filled in; OptionError naming a bad key or value.
    Keys that are not Stability options belong to someone else and are ignored."""
    out: dict[str, Any] = {"output_format": "png"}
    for name, allowed in (("style_preset", STYLE_PRESETS), ("output_format", OUTPUT_FORMATS)):
        value = options.get(name)
        if value is not None:
            if value not in allowed:
                raise OptionError(name, f"must be one of {one_of(allowed)}, got {shown(value)}")
            out[name] = value
    negative = options.get("negative_prompt")
    if negative is not None:
        if not isinstance(negative, str):
            raise OptionError("negative_prompt", f"must be text, got {kind_of(negative)}")
        if len(negative) > MAX_PROMPT:
            raise OptionError("negative_prompt", f"must be at most {MAX_PROMPT} characters, "
                                                 f"got {len(negative)}")
        if negative.strip():
            out["negative_prompt"] = negative
    seed = options.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise OptionError("seed", f"must be a whole number from 0 (random) to {MAX_SEED}, "
                                      f"got {shown(seed)}")
        out["seed"] = seed
    strength = options.get("strength")
    if strength is not None:
        number = as_number(strength)
        if number is None or not 0 <= number <= 1:
            raise OptionError("strength", f"must be a number from 0 to 1, got {shown(strength)}")
        out["strength"] = number
    return out


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as given, once checked (what the manifest keeps)."""
    settle_options(options)
    return dict(options)


def nearest_ratio(ratio: str) -> str:
    """The Stability ratio nearest to `ratio` in log scale (4:3 → 5:4, 3:4 → 4:5, 4:1 → 21:9);
    a tie goes to the squarer one. InvalidRequestError when `ratio` is not W:H."""
    try:
        wanted = catalog.ratio_log(ratio)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None

    def distance(candidate: str) -> tuple[float, float]:
        have = catalog.ratio_log(candidate)
        return round(abs(have - wanted), 9), abs(have)

    return min(ASPECT_RATIOS, key=distance)


def build_form(request: ImageRequest,
               options: Mapping[str, Any]) -> tuple[Endpoint, Parts, dict[str, Any]]:
    """The endpoint, the multipart parts, and what to record about the request in the image's
    usage. Raises InvalidRequestError for what Stability would refuse (nothing is sent)."""
    endpoint = ENDPOINTS.get(request.model)
    if endpoint is None:
        raise UnknownModelError(_unknown_model(request.model))
    if len(request.prompt) > MAX_PROMPT:
        raise InvalidRequestError(f"the prompt is {len(request.prompt)} characters; Stability "
                                  f"takes at most {MAX_PROMPT}")
    output_format = options["output_format"]
    if output_format not in endpoint.formats:
        raise InvalidRequestError(f"{request.model} cannot write {output_format}; set "
                                  f"providers.stability.output_format to png or jpeg")
    fields: dict[str, str] = {"prompt": request.prompt, "output_format": output_format}
    recorded: dict[str, Any] = {}
    files: Parts = []
    if request.references:
        if not endpoint.takes_image:
            raise InvalidRequestError(
                f"{request.model} takes no reference images; use sd3.5-large, "
                "sd3.5-large-turbo or sd3.5-medium (one image), or remove the images")
        if len(request.references) != 1:
            raise InvalidRequestError(f"{request.model} takes one reference image, got "
                                      f"{len(request.references)}")
        ref = request.references[0]
        strength = options.get("strength", DEFAULT_STRENGTH)
        fields.update(mode="image-to-image", strength=f"{strength:g}")
        files.append(("image", (f"reference.{extension_for(ref.mime_type)}", ref.data,
                                ref.mime_type)))
    elif request.aspect_ratio is not None:  # image-to-image keeps the reference's shape
        sent = nearest_ratio(request.aspect_ratio)
        fields["aspect_ratio"] = recorded["aspect_ratio"] = sent
        if sent != request.aspect_ratio.strip():
            recorded["aspect_ratio_asked"] = request.aspect_ratio
    if endpoint.model_field:
        fields["model"] = endpoint.model_field
    for name in ("negative_prompt", "style_preset"):
        if name in options:
            fields[name] = options[name]
    if "seed" in options:
        fields["seed"] = str(options["seed"])
    # Text parts without a file name come first: the form stays multipart with no file.
    parts: Parts = [(name, (None, value.encode(), None)) for name, value in fields.items()]
    return endpoint, parts + files, recorded


def _unknown_model(model: str) -> str:
    return (f"{model!r} is not a Stability model nbbatch knows; use one of "
            f"{', '.join(ENDPOINTS)}")


class StabilityProvider(KeyedProvider):
    default_base_url = DEFAULT_BASE_URL
    default_key_env = DEFAULT_KEY_ENV

    def __init__(self, config: ProviderConfig, api_key: str, *,
                 transport: httpx.AsyncBaseTransport | None = None, name: str | None = None,
                 accept: str = "image/*") -> None:  # or "application/json"
        super().__init__(config, api_key, transport=transport, name=name)
        self.options = self.settled(settle_options)
        self._headers = {"Authorization": f"Bearer {api_key}", "Accept": accept}

    def url_for(self, endpoint: Endpoint) -> str:
        return f"{self._base_url}/v2beta/stable-image/generate/{endpoint.path}"

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        try:
            endpoint, parts, recorded = build_form(request, self.options)
        except (InvalidRequestError, UnknownModelError) as exc:  # refused before sending
            raise type(exc)(exc.message, provider=self.name) from None
        raw = await post_multipart(
            self._client, self.url_for(endpoint), data={}, files=parts, headers=self._headers,
            timeout=self.config.timeout, max_bytes=MAX_RESPONSE_BYTES, provider=self.name,
            redact=self._redact,
        )
        return classify(raw.status, raw.headers, raw.body, provider=self.name,
                        redact=self._redact, model=request.model, key_env=self._key_env,
                        recorded=recorded)

    async def check(self, model: str) -> None:
        """Pre-flight for one model: the key is accepted and the balance pays for one image.

        Raises FatalError for the key, QuotaExhaustedError for a balance short of one image,
        UnknownModelError; CheckUnavailable when the server gives no usable answer (no
        balance route at base_url, a connection error, an overload): send one request alone.
        """
        if model not in ENDPOINTS:
            raise UnknownModelError(_unknown_model(model), provider=self.name)
        url = f"{self._base_url}/v1/user/balance"
        try:
            raw = await get_bytes(
                self._client, url, headers={**self._headers, "Accept": "application/json"},
                timeout=min(self.config.timeout, 30.0), max_bytes=1024 * 1024,
                provider=self.name, redact=self._redact,
            )
            success = 200 <= raw.status < 300
            if raw.status in (404, 405, 501) or (success and not looks_like_json(raw.body)):
                raise CheckUnavailable(self._redact.message(
                    f"no balance route at {url} (HTTP {raw.status})"))
            if not success:  # a rejected key, an overload: what a generation answer means
                classify(raw.status, raw.headers, raw.body, provider=self.name,
                         redact=self._redact, model=model, key_env=self._key_env)
        except (TransientError, InvalidRequestError, BlockedError) as exc:
            raise CheckUnavailable(exc.message) from None  # nothing said of key or balance
        credits = as_number(get(parse_object(raw.body), "credits"))
        if credits is None:
            raise CheckUnavailable("the balance answer has no credits figure")
        needed = catalog.price(model) / USD_PER_CREDIT
        if credits < needed:
            raise QuotaExhaustedError(
                f"the Stability balance is {credits:g} credits; one {model} image costs "
                f"{needed:g}: add credits to the account", provider=self.name,
                status=raw.status)


create = StabilityProvider.create
