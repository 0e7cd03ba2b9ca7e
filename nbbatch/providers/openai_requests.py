"""What nbbatch sends to the OpenAI Images API: options, sizes, JSON and multipart bodies.

- The request always names its model (OpenAI's default would be dall-e-2) and asks for one
  image. GPT image models get `quality`, `output_format`, `background` and, on generations
  only, `moderation`, from the provider's options; dall-e models get the few fields they
  accept and `response_format: b64_json`.
- OpenAI takes a pixel size, not an aspect ratio: `size_for` picks the model's size nearest
  to the ratio asked for (none asked: "auto"). `ImageRequest.image_size` ("1K", "2K"...) has
  no OpenAI equivalent and is ignored.
- Reference images turn the request into a multipart edit: one `image[]` part per image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbbatch import catalog
from nbbatch.errors import InvalidRequestError, OptionError
from nbbatch.images import extension_for
from nbbatch.providers.base import ImageRequest
from nbbatch.text import one_of, shown

# providers.openai options (ProviderConfig.options) and the values each accepts.
OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "quality": ("auto", "low", "medium", "high"),
    "background": ("auto", "transparent", "opaque"),
    "output_format": ("png", "jpeg", "webp"),
    "moderation": ("auto", "low"),
    "input_fidelity": ("low", "high"),  # edits only
}
TEXT_OPTIONS = ("organization", "project")  # sent as OpenAI-Organization / OpenAI-Project
OPTION_DEFAULTS = {"quality": "auto", "background": "auto", "output_format": "png"}



def settle_options(options: Mapping[str, Any]) -> dict[str, str]:
    """The provider's options with defaults filled in; OptionError naming a bad key or value.

    Keys other than OPTION_CHOICES and TEXT_OPTIONS belong to someone else and are ignored.
    """
    out = dict(OPTION_DEFAULTS)
    for name, allowed in OPTION_CHOICES.items():
        value = options.get(name)
        if value is None:
            continue
        if value not in allowed:
            raise OptionError(name, f"must be one of {one_of(allowed)}, got {shown(value)}")
        out[name] = value
    for name in TEXT_OPTIONS:
        value = options.get(name)
        if value is not None:
            if not isinstance(value, str) or not value.strip() or "\n" in value:
                raise OptionError(name, f"must be a one-line id, got {value!r}")
            out[name] = value.strip()
    if out["background"] == "transparent" and out["output_format"] == "jpeg":
        raise OptionError("background", "transparent needs output_format png or webp, not jpeg")
    return out


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as given, once checked (what the manifest keeps)."""
    settle_options(options)
    return dict(options)


def is_dall_e(model: str) -> bool:
    return model.startswith("dall-e")


def size_for(model: str, aspect_ratio: str | None) -> str:
    """The `size` to send for the ratio asked (the catalog knows each model's sizes)."""
    try:
        return catalog.pixel_size(model, aspect_ratio)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None


def build_generation_body(request: ImageRequest, options: Mapping[str, str]) -> dict[str, Any]:
    """The JSON for POST /images/generations. `options` as returned by check_options."""
    body: dict[str, Any] = {
        "model": request.model,
        "prompt": request.prompt,
        "n": 1,
        "size": size_for(request.model, request.aspect_ratio),
    }
    if is_dall_e(request.model):
        body.update(_dall_e_fields(request.model, options))
        return body
    body.update(quality=options["quality"], output_format=options["output_format"],
                background=options["background"])
    if options.get("moderation"):
        body["moderation"] = options["moderation"]
    return body


def build_edit_form(
    request: ImageRequest, options: Mapping[str, str]
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    """Text fields and file parts for POST /images/edits (multipart): one `image[]` each.

    The edits endpoint takes no `moderation`. dall-e-3 cannot edit (InvalidRequestError);
    dall-e-2 takes a single square PNG as `image`.
    """
    model = request.model
    if model.startswith("dall-e-3"):
        raise InvalidRequestError(f"{model} cannot edit images: remove the reference images "
                                  "or use a gpt-image model")
    data = {"model": model, "prompt": request.prompt, "n": "1",
            "size": size_for(model, request.aspect_ratio)}
    if is_dall_e(model):
        if len(request.references) != 1:
            raise InvalidRequestError(f"{model} edits take exactly one reference image, "
                                      f"got {len(request.references)}")
        data.update(_dall_e_fields(model, options))
        ref = request.references[0]
        return data, [("image", ("image-1.png", ref.data, ref.mime_type))]
    data.update(quality=options["quality"], output_format=options["output_format"],
                background=options["background"])
    if options.get("input_fidelity") and model != "gpt-image-1-mini":
        data["input_fidelity"] = options["input_fidelity"]
    files = [
        ("image[]", (f"image-{i}.{extension_for(ref.mime_type)}", ref.data, ref.mime_type))
        for i, ref in enumerate(request.references, 1)
    ]
    return data, files


def _dall_e_fields(model: str, options: Mapping[str, str]) -> dict[str, str]:
    fields = {"response_format": "b64_json"}
    if model.startswith("dall-e-3"):
        fields["quality"] = "hd" if options.get("quality") == "high" else "standard"
    return fields
