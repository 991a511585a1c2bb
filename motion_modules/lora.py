"""MotionLoRA files as data plus pure functions: which format a file is, which motion-module weight each of its
factor pairs patches, which of its keys do not apply, and whether its shapes fit. Nothing here reads a file or
changes a tensor; the glue hands the map to ComfyUI's own LoRA loader.

Formats (the suffix decides the family; any family may name its layers in any of the namings below):
- ``official``: ``….attention_blocks.{a}.processor.to_{q,k,v,out}_lora.{down,up}.weight``, no alpha, so
  ΔW = up @ down (guoyww/AnimateDiff v2_lora_*.ckpt, read by animatediff/utils/convert_lora_safetensor_to_diffusers.py
  ``convert_motion_lora_ckpt_to_diffusers`` and ADE's ``load_motion_lora_as_patches``; ``to_out`` means
  ``to_out.0``). Old diffusers ``save_attn_procs`` files use the same suffix on diffusers names
  (``….attn1.processor.to_q_lora.down.weight``, diffusers utils/state_dict_utils.py ``UNET_TO_DIFFUSERS``).
- ``peft``: ``….to_q.lora_A.weight`` / ``lora_B`` (also ``.lora.down/.up`` and ``lora_A.default``), on diffusers
  names (``….motion_modules.{j}.transformer_blocks.0.attn1.to_out.0``) or internal ones, optionally under
  ``unet.`` / ``base_model.model.``; no alpha in the file, so ΔW = B @ A.
- ``kohya``: ``lora_unet_<name with dots as underscores>.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha``,
  ΔW = alpha / rank · up @ down.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from .errors import MotionModuleError, first_few
from .formats import MODULE_RE, identify_wrong_kind, strip_prefix
from .spec import FAMILY_NAMES, VERSION_NAMES, MotionModuleSpec, expected_shapes, module_prefixes

# suffix -> (role, format family); the order matters: the longest official suffix is tried first
SUFFIXES: tuple[tuple[str, str, str], ...] = (
    ("_lora.down.weight", "down", "official"), ("_lora.up.weight", "up", "official"),
    (".lora_A.default.weight", "down", "peft"), (".lora_B.default.weight", "up", "peft"),
    (".lora_A.weight", "down", "peft"), (".lora_B.weight", "up", "peft"),
    (".lora.down.weight", "down", "peft"), (".lora.up.weight", "up", "peft"),
    (".lora_down.weight", "down", "kohya"), (".lora_up.weight", "up", "kohya"),
    (".alpha", "alpha", ""),
)
WRAPPER_PREFIXES = ("module.", "base_model.model.", "unet.")  # DDP, PEFT and diffusers pipeline wrappers
KOHYA_PREFIX = "lora_unet_"
SEAT_RE = re.compile(r"(?:^|[._])(?:(?P<kind>down_blocks|up_blocks)[._](?P<i>\d+)|mid_block)[._]"
                     r"motion_modules[._](?P<j>\d+)(?:[._]|$)")
MOTION_LORA = "a MotionLoRA"  # identify_wrong_kind's name for this kind of file


class MotionLoRAError(MotionModuleError):
    """A file given as a MotionLoRA cannot be applied to this motion module."""


class NotAMotionLoRAError(MotionLoRAError):
    """The file is another kind of weights (SD LoRA, domain adapter, checkpoint, motion module …)."""

    def __init__(self, message: str, kind: str = ""):
        super().__init__(message)
        self.kind = kind


class MotionLoRAShapeError(MotionLoRAError):
    """The LoRA's factors do not fit the module's weights (another family or layout)."""


@dataclass(frozen=True)
class MotionLoRAPlan:
    """What applying one MotionLoRA file to one motion module means, before any tensor is touched."""

    format: str  # "official" | "peft" | "kohya", or several joined by "+"
    key_map: dict  # lora prefix as written in the file -> internal weight key, e.g. "….to_q.weight"
    skipped: tuple[str, ...]  # keys of the file that patch nothing in this module
    missing_seats: tuple[str, ...]  # motion-module seats the LoRA has and the module lacks
    rank: int  # largest rank among the applied pairs


@dataclass(frozen=True)
class _Pair:
    """The factor keys found for one lora prefix."""

    down: str | None = None
    up: str | None = None
    alpha: str | None = None
    family: str = ""


def split_key(key: str) -> tuple[str, str, str] | None:
    """``(prefix, role, family)`` of one LoRA key, e.g. ``("….to_q", "down", "peft")``; None for other keys."""
    for suffix, role, family in SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], role, family
    return None


def _pairs(keys: list[str]) -> tuple[dict[str, _Pair], list[str]]:
    """Group factor keys by prefix; keys that are no LoRA factor at all come back as the second value."""
    found: dict[str, dict[str, str]] = {}
    other: list[str] = []
    for key in keys:
        parts = split_key(key)
        if parts is None:
            other.append(key)
            continue
        prefix, role, family = parts
        slot = found.setdefault(prefix, {})
        slot[role] = key
        if family:
            slot["family"] = family
    return {p: _Pair(s.get("down"), s.get("up"), s.get("alpha"), s.get("family", "")) for p, s in found.items()}, other


def normalise(prefix: str) -> str:
    """A lora prefix without the wrapper prefixes PEFT, diffusers pipelines and DDP training add."""
    changed = True
    while changed:
        changed = False
        for wrapper in WRAPPER_PREFIXES:
            if prefix.startswith(wrapper):
                prefix, changed = prefix[len(wrapper):], True
    return prefix


def diffusers_name(internal: str) -> str:
    """The MotionAdapter name of an internal layer name (``attention_blocks.0`` -> ``attn1``)."""
    name = internal.replace(".temporal_transformer.", ".")
    return re.sub(r"\.attention_blocks\.(\d)\.", lambda m: f".attn{int(m[1]) + 1}.", name)


def _processor_name(name: str) -> str | None:
    """The attention-processor spelling of an attention projection (``….to_out.0`` -> ``….processor.to_out``)."""
    m = re.match(r"^(?P<attn>.+\.(?:attention_blocks\.\d|attn\d))\.(?P<proj>to_[qkv]|to_out)(?:\.0)?$", name)
    return f"{m['attn']}.processor.{m['proj']}" if m else None


def layer_aliases(internal_weight: str) -> set[str]:
    """Every normalised lora prefix that names the layer owning ``internal_weight`` (``….weight``)."""
    base = internal_weight.removesuffix(".weight")
    dotted = {base, diffusers_name(base)}
    names = set(dotted)
    names |= {p for n in dotted if (p := _processor_name(n))}
    names |= {KOHYA_PREFIX + n.replace(".", "_") for n in dotted}
    return names


def lora_targets(spec: MotionModuleSpec) -> dict[str, tuple[int, int]]:
    """Internal keys of every 2-D (linear) weight a MotionLoRA can patch, with their ``(out, in)`` shapes."""
    return {k: (s[0], s[1]) for k, s in expected_shapes(spec).items() if len(s) == 2 and k.endswith(".weight")}


def alias_table(spec: MotionModuleSpec) -> dict[str, str]:
    """Normalised lora prefix -> internal weight key, for every linear layer of ``spec``."""
    return {alias: key for key in lora_targets(spec) for alias in layer_aliases(key)}


def _seat(prefix: str) -> str | None:
    """The motion-module seat a lora prefix points into, in internal spelling, or None."""
    m = SEAT_RE.search(prefix)
    if m is None:
        return None
    seat = f"{m['kind']}.{m['i']}" if m["kind"] else "mid_block"
    return f"{seat}.motion_modules.{m['j']}"


def lora_family(prefixes: list[str]) -> str:
    """``SD1.5`` / ``SDXL`` from how many down levels the LoRA's seats span; ``""`` when it cannot tell."""
    levels = {int(s.split(".")[1]) for p in prefixes if (s := _seat(p)) and s.startswith("down_blocks.")}
    return {4: FAMILY_NAMES["sd15"], 3: FAMILY_NAMES["sdxl"]}.get(max(levels, default=-1) + 1, "")


def describe_module(spec: MotionModuleSpec) -> str:
    """E.g. ``SD1.5 AnimateDiff v3``."""
    return f"{FAMILY_NAMES.get(spec.family, spec.family)} {VERSION_NAMES.get(spec.version, spec.version)}"


def check_kind(sd: Mapping[str, Tensor], source: str) -> None:
    """Raise NotAMotionLoRAError, saying what the file is and where it belongs, unless it is a MotionLoRA."""
    found = identify_wrong_kind(sd)
    if found is not None and found.split(";")[0] == MOTION_LORA:
        return
    if found is None:
        keys = list(sd)
        keys = [k[len(p):] for k in keys] if (p := strip_prefix(keys)) else keys
        if any(MODULE_RE.match(k) for k in keys):
            found = "a motion module; load it with Load Motion Module"
        else:
            found = f"no MotionLoRA keys among its {len(keys)} keys (first: {first_few(sorted(keys))})"
    raise NotAMotionLoRAError(f"{source}: expected a MotionLoRA, found {found}.", kind=found.split(";")[0])


def _factor_shape(t: Tensor) -> tuple[int, int]:
    """A factor as a matrix (a conv-style ``(r, in, 1, 1)`` factor counts as ``(r, in)``)."""
    return (int(t.shape[0]), int(t.numel() // max(t.shape[0], 1))) if t.ndim >= 2 else (-1, -1)


def _fit_problem(sd: Mapping[str, Tensor], pair: _Pair, shape: tuple[int, int]) -> str | None:
    """``"<up key> is […] and <down key> is […]"`` when the factors do not fit a ``shape`` = (out, in) weight."""
    up, down = _factor_shape(sd[pair.up]), _factor_shape(sd[pair.down])
    if up[0] == shape[0] and down[1] == shape[1] and up[1] == down[0]:
        return None
    return f"{pair.up} is {list(sd[pair.up].shape)} and {pair.down} is {list(sd[pair.down].shape)}"


def _mismatch_error(source: str, target: str, spec: MotionModuleSpec, problems: list[tuple[str, str]],
                    prefixes: list[str], applied: int) -> MotionLoRAShapeError:
    """One sentence naming the LoRA, the module and both families."""
    family = lora_family(prefixes)
    what = f"one for {family} motion modules" if family else "one whose layers have other widths"
    internal, problem = problems[0]
    weight = lora_targets(spec)[internal]
    return MotionLoRAShapeError(
        f"{source}: expected a MotionLoRA for {target} ({describe_module(spec)}), found {what}: {problem}, but the "
        f"module's {internal} is {list(weight)} ({len(problems)} of {applied} layers do not fit).")


def plan_motion_lora(sd: Mapping[str, Tensor], spec: MotionModuleSpec, source: str = "<MotionLoRA>",
                     target: str = "<motion module>") -> MotionLoRAPlan:
    """Check a MotionLoRA against a motion module and map its pairs to internal weight keys; raises if it cannot apply."""
    check_kind(sd, source)
    pairs, other = _pairs(list(sd))
    table, targets, seats = alias_table(spec), lora_targets(spec), {p for p, _ in module_prefixes(spec)}
    key_map, skipped, missing_seats, problems, ranks = {}, list(other), set(), [], []
    families: Counter = Counter()
    for prefix, pair in pairs.items():
        keys = [k for k in (pair.down, pair.up, pair.alpha) if k]
        internal = table.get(normalise(prefix))
        if internal is None or pair.down is None or pair.up is None:
            skipped += keys
            seat = _seat(normalise(prefix))
            if seat is not None and seat not in seats:
                missing_seats.add(seat)
            continue
        if internal in key_map.values():
            raise MotionLoRAError(f"{source}: expected one LoRA pair per layer, found two for {internal}.")
        if problem := _fit_problem(sd, pair, targets[internal]):
            problems.append((internal, problem))
        key_map[prefix] = internal
        families[pair.family] += 1
        ranks.append(_factor_shape(sd[pair.down])[0])
    if problems:
        raise _mismatch_error(source, target, spec, problems, [normalise(p) for p in pairs], len(key_map))
    if not key_map:
        seats_note = f" (its layers sit in {first_few(sorted(missing_seats))}, which {target} lacks)" \
            if missing_seats else ""
        raise MotionLoRAError(f"{source}: expected LoRA pairs for the layers of {target} ({describe_module(spec)}), "
                              f"found none among its {len(sd)} keys{seats_note}.")
    return MotionLoRAPlan("+".join(sorted(families)), key_map, tuple(sorted(skipped)),
                          tuple(sorted(missing_seats)), max(ranks))


def skipped_summary(plan: MotionLoRAPlan, total: int, target: str) -> str:
    """One line for the log: how many keys were skipped and why, e.g. ``12 of its 96 keys … (mid_block…)``."""
    in_missing = sum(1 for k in plan.skipped if _seat(normalise(k)) in plan.missing_seats)
    reasons = [f"{in_missing} for motion modules {target} lacks ({first_few(list(plan.missing_seats), 3)})"
               if in_missing else "", f"{len(plan.skipped) - in_missing} that name no layer of it (first: "
               f"{first_few([k for k in plan.skipped if _seat(normalise(k)) not in plan.missing_seats], 3)})"
               if len(plan.skipped) > in_missing else ""]
    return f"{len(plan.skipped)} of its {total} keys do not apply to {target} and were skipped: " \
           f"{'; '.join(r for r in reasons if r)}"
