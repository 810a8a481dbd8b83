"""The registry of model families: one frozen `SpaceSpec` per family, registered by the family's own module.

Everything that differs between families is here: the space's name, the environment variable that names its model
and the default model (None: the family is off unless its variable is set), how to load it, the modalities of the
items it embeds and the kinds of query it takes, whether its text tower can name clusters, and how to read its
scores (`Calibration`). Settings, ingest, search, analysis, the pages and the CLI read this registry and never name
a family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping

import numpy as np

from ..errors import MMError

if TYPE_CHECKING:
    from ..config import Settings

QUERY_KINDS = ("text", "image", "audio")  # item modalities are mmcore.media's (MODALITIES there)
DEFAULT_SPACE = "clip"  # where a collection is looked for when no space is named (the first family registered)


@dataclass(frozen=True)
class Calibration:
    """How to read a family's cosine similarities, which live on its own scale (SigLIP's run far lower than CLIP's).

    `duplicate`: the cosine at or above which two items of one modality are near-duplicates.
    `image_text`: the cosine at or above which an image and a text belong together (a caption and its picture).
    `probability`: (loaded space, cosines) -> the model's own probability that a text and a picture match, for
    families trained with one (SigLIP's sigmoid); None for families that only rank (CLIP's softmax is over a batch).
    """

    duplicate: float = 0.95
    image_text: float = 0.40  # CLIP scores an image against its own caption far lower than two copies of an image
    probability: Callable[[Any, np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class SpaceSpec:
    """One model family: everything mmscope needs to know about it, none of which is written anywhere else.

    `load(model, settings)` returns the loaded space (see mmcore.spaces.Space) for a hub id or local folder;
    `modalities`: the item modalities it embeds (every enabled space that takes a modality gets its items);
    `queries`: the query kinds it embeds ("text", "image", "audio"); `names_clusters`: its text tower
    (`embed_texts`) names clusters of its items from a vocabulary; `backends`: whether MMCORE_BACKEND applies
    (else it runs on torch); `multivector`: its items keep a token matrix each beside Chroma (mmcore.multivector),
    made by the space's `embed_with_tokens(chunks) -> (pooled vectors, token matrices)`, and a text query's
    `embed_query_tokens` ranks them by MaxSim (mmcore.doc_search). `text_heads`: the model has a text head per
    target modality (each trained against that modality's head alone), so a text query is embedded once per
    modality searched, `embed_query("text", texts, target=modality)`, and each list ranked in its own head.

    A hosted family (its model runs at a service, which gets the media) also has `switch`, the variable that turns
    it on (its API key: off while unset, whatever `variable` names), `sends_to()`, where the media goes, for people
    ("Twelve Labs (api.twelvelabs.io)"), and `connection()`, what else its loader reads from the environment (the
    service's URL and key): a loaded space is shared only while that stays the same. `notice`: a plain sentence,
    naming the family, that people must see while it is on (its licence's terms).
    """

    name: str
    title: str  # for people: "CLIP"
    variable: str
    default_model: str | None
    load: Callable[[str, "Settings"], Any]
    modalities: frozenset[str]
    queries: frozenset[str]
    names_clusters: bool = False
    calibration: Calibration = field(default_factory=Calibration)
    backends: bool = False
    multivector: bool = False
    text_heads: bool = False
    switch: str | None = None
    sends_to: Callable[[], str] | None = None
    connection: Callable[[], Hashable] | None = None
    notice: str | None = None

    def __post_init__(self):
        unknown = set(self.queries) - set(QUERY_KINDS)
        if unknown:
            raise MMError(f"space {self.name!r} declares unknown query kinds: {sorted(unknown)}")

    def takes(self, modality: str) -> bool:
        return modality in self.modalities

    @property
    def binds(self) -> bool:
        """Whether it holds sounds and pictures in one space (a sound can find scenes, a picture sounds)."""
        return "audio" in self.modalities and bool(self.modalities & {"image", "video"})

    def model_in(self, env: Mapping[str, str]) -> str | None:
        """The model `env` configures for this family, or None when it leaves the family off."""
        if self.switch and not env.get(self.switch, "").strip():
            return None
        return env.get(self.variable, "").strip() or self.default_model

    @property
    def turn_on(self) -> str:
        """How to turn the family on, for a message: "set MMCORE_SIGLIP_MODEL to ..."."""
        if self.switch:
            return f"set {self.switch} to use it"
        return f"set {self.variable} to the hub id or local folder of a {self.title} checkpoint to use it"


_SPECS: dict[str, SpaceSpec] = {}


def register(spec: SpaceSpec) -> SpaceSpec:
    """Add a family (called once by its module at import). Raises MMError for a name taken by another family."""
    if spec.name in _SPECS and _SPECS[spec.name] != spec:
        raise MMError(f"space {spec.name!r} is registered twice")
    _SPECS[spec.name] = spec
    return spec


def specs() -> list[SpaceSpec]:
    """Every registered family, in the order registered."""
    return list(_SPECS.values())


def names() -> tuple[str, ...]:
    return tuple(_SPECS)


def spec_of(name: str) -> SpaceSpec | None:
    """The family of space `name`, or None (a space of imported vectors, made without a model)."""
    return _SPECS.get(name)


def require(name: str) -> SpaceSpec:
    """The family of space `name`; raises MMError naming the known ones."""
    found = _SPECS.get(name)
    if found is None:
        raise MMError(f"unknown space {name!r}; known spaces: {', '.join(_SPECS)}")
    return found


def enabled(settings: "Settings") -> list[SpaceSpec]:
    """The families whose model is configured (the default ones, and optional ones whose variable is set)."""
    return [s for s in _SPECS.values() if settings.model_for(s.name)]


def spaces_for(modality: str, settings: "Settings") -> list[str]:
    """The enabled spaces that embed items of `modality`, in registry order (any number of them)."""
    return [s.name for s in enabled(settings) if modality in s.modalities]


def hosted_notices(settings: "Settings") -> list[str]:
    """A plain sentence per enabled hosted family, saying where its media goes."""
    return [f"Media in the {s.name} space is sent to {s.sends_to()}, and so are the queries searched in it."
            for s in enabled(settings) if s.sends_to is not None]


def notices(settings: "Settings") -> list[str]:
    """What people must be told about the enabled families (for the app's sidebar and the CLI): where a hosted
    family's media goes, and each family's own notice (a licence's terms)."""
    return hosted_notices(settings) + [s.notice for s in enabled(settings) if s.notice]


def accepts(name: str, kind: str) -> bool:
    """Whether space `name` can embed a query of `kind` (False for spaces of imported vectors)."""
    found = _SPECS.get(name)
    return found is not None and kind in found.queries


def calibration(name: str) -> Calibration:
    """The space's score calibration; the defaults for a space of imported vectors."""
    found = _SPECS.get(name)
    return found.calibration if found is not None else Calibration()


def default_models() -> dict[str, str]:
    """Model per space for the families that are on by default (a hosted family never is: it needs its key)."""
    return {s.name: s.default_model for s in _SPECS.values() if s.default_model and not s.switch}
