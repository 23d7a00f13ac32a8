"""KServe v1, as Wikimedia's Lift Wing serves models: `/v1/models/open-nsfw[:predict]`."""

from __future__ import annotations

import base64
import binascii

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from mediaguard.api.deps import get_service, scoring_access
from mediaguard.config import MIB, NsfwMode
from mediaguard.errors import (
    InvalidInputError,
    MediaguardError,
    MediaTooLargeError,
    NotFoundError,
    TooManyItemsError,
)
from mediaguard.service import ScoreResult, Service

MODEL_ROUTE_NAME = "open-nsfw"
MAX_INSTANCES = 50
MAX_INSTANCE_BYTES = 4 * MIB

router = APIRouter(tags=["kserve"], dependencies=[Depends(scoring_access)])


class Base64Image(BaseModel):
    b64: str


class Instance(BaseModel):
    image: Base64Image | str | None = Field(
        None, description='base64 image bytes: {"b64": "..."} or the bare string'
    )
    url: str | None = None


class PredictRequest(BaseModel):
    instances: list[Instance]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {"instances": [{"url": "https://upload.wikimedia.org/example.jpg"}]},
                {"instances": [{"image": {"b64": "iVBORw0KGgo..."}}]},
            ]
        }
    }


class PredictResponse(BaseModel):
    predictions: list[ScoreResult]


class ModelStatus(BaseModel):
    name: str
    ready: bool
    version: str | None = None


@router.get("/v1/models/{name}", response_model=ModelStatus)
def model_status(name: str, service: Service = Depends(get_service)) -> ModelStatus:
    _check_name(name)
    loaded = service.model_loaded()
    return ModelStatus(
        name=MODEL_ROUTE_NAME, ready=loaded, version=service.nsfw().version if loaded else None
    )


@router.post(f"/v1/models/{MODEL_ROUTE_NAME}:predict", response_model=PredictResponse)
def predict(
    body: PredictRequest, mode: NsfwMode | None = None, service: Service = Depends(get_service)
) -> PredictResponse:
    """Score up to 50 images (base64 or URL, 4 MiB each). Any bad instance fails the request,
    naming the instance, as KServe does."""
    if not body.instances:
        raise InvalidInputError("instances is empty")
    if len(body.instances) > MAX_INSTANCES:
        raise TooManyItemsError(
            f"{len(body.instances)} instances; at most {MAX_INSTANCES} per request"
        )
    items = [_item(index, instance) for index, instance in enumerate(body.instances)]
    results = service.score_many(items, mode=mode)
    for index, result in enumerate(results):
        if isinstance(result, MediaguardError):
            raise type(result)(f"instances[{index}]: {result.message}", code=result.code)
    return PredictResponse(predictions=[r for r in results if isinstance(r, ScoreResult)])


def _item(index: int, instance: Instance) -> bytes | str:
    if instance.image is not None and instance.url is not None:
        raise InvalidInputError(f"instances[{index}]: give image or url, not both")
    if instance.url is not None:
        return instance.url
    if instance.image is None:
        raise InvalidInputError(f"instances[{index}]: needs image.b64 or url")
    encoded = instance.image.b64 if isinstance(instance.image, Base64Image) else instance.image
    if len(encoded) > (MAX_INSTANCE_BYTES * 4) // 3 + 4:
        raise MediaTooLargeError(f"instances[{index}]: image over {MAX_INSTANCE_BYTES} bytes")
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(f"instances[{index}]: image is not valid base64") from None
    if len(content) > MAX_INSTANCE_BYTES:
        raise MediaTooLargeError(f"instances[{index}]: image over {MAX_INSTANCE_BYTES} bytes")
    return content


def _check_name(name: str) -> None:
    if name != MODEL_ROUTE_NAME:
        raise NotFoundError(f"no model named {name!r}; this service serves {MODEL_ROUTE_NAME!r}")
