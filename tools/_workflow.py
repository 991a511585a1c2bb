"""UI-format workflows (as the ComfyUI frontend saves them) to API prompts (as POST /prompt takes them).

    prompt = workflow_to_prompt(json.loads(path.read_text()), server.object_info(),
                                overrides={"EmptyLatentImage": {"width": 64, "height": 64, "batch_size": 2}})

Widget values map to input names the way the frontend does: the widget inputs of a node are its
required then optional inputs whose type is a widget type (INT, FLOAT, STRING, BOOLEAN, COMBO or an
options list) and not ``forceInput``, in declaration order; an INT with ``control_after_generate`` (by
default any INT named seed/noise_seed) and a COMBO with ``control_after_generate`` are followed by the
control value ("randomize", "fixed", ...), and an upload combo may be followed by its upload widget's value.
A linked input takes its link, not its widget value. Muted nodes (mode 2) are dropped, bypassed nodes
(mode 4) pass an input of the same type through, Reroute nodes are followed, PrimitiveNode values are
already in the target's widgets_values, and Note/MarkdownNote are ignored. Subgraphs and group nodes
are not supported and raise.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_NAMES = {"seed", "noise_seed"}
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload", "audio_upload")
MODE_MUTED, MODE_BYPASS = 2, 4
FRONTEND_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}


class WorkflowError(ValueError):
    """The workflow cannot be converted; the message names the node and what was expected."""


def load_workflow(path: Path) -> dict:
    """Read a UI-format workflow JSON file."""
    return json.loads(Path(path).read_text())


def is_ui_workflow(data: dict) -> bool:
    """UI format has ``nodes`` and ``links`` lists; API format maps node ids to ``class_type`` dicts."""
    return isinstance(data.get("nodes"), list) and "links" in data


def _is_widget_spec(spec: list) -> bool:
    """Whether an /object_info input spec ``[type, options?]`` becomes a widget in the frontend."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def widget_slots(info: dict) -> list[tuple[str, int, int]]:
    """``(input name, control values, upload values)`` for each widget of a node, in widgets_values order."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {group: list(inputs.get(group, {})) for group in ("required", "optional")}
    slots = []
    for group in ("required", "optional"):
        for name in order.get(group, []):
            spec = inputs.get(group, {}).get(name)
            if not spec or not _is_widget_spec(spec):
                continue
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            control = options.get("control_after_generate")
            if kind == "INT" and control is None:
                control = name in SEED_NAMES
            is_combo = kind == "COMBO" or isinstance(kind, list)
            has_control = bool(control) and (kind == "INT" or is_combo)
            upload = 1 if is_combo and any(options.get(flag) for flag in UPLOAD_FLAGS) else 0
            slots.append((name, int(has_control), upload))
    return slots


def widget_inputs(node: dict, info: dict) -> dict[str, Any]:
    """``{input name: value}`` from a UI node's ``widgets_values`` (a list, or a dict keyed by name)."""
    values = node.get("widgets_values")
    if values is None:
        values = []
    slots = widget_slots(info)
    if isinstance(values, dict):
        return {name: values[name] for name, _, _ in slots if name in values}
    with_upload = sum(1 + c + u for _, c, u in slots)
    without_upload = sum(1 + c for _, c, _ in slots)
    if len(values) not in (with_upload, without_upload):
        expected = ", ".join(name + (" (+control)" if c else "") + (" (+upload)" if u else "") for name, c, u in slots)
        raise WorkflowError(
            f"node {node['id']} ({node['type']}) has {len(values)} widgets_values {values!r}, but its widget "
            f"inputs are [{expected}] = {without_upload} (or {with_upload} with upload widgets) values"
        )
    uploads = len(values) == with_upload
    out, pos = {}, 0
    for name, control, upload in slots:
        out[name] = values[pos]
        pos += 1 + control + (upload if uploads else 0)
    return out


def _links(workflow: dict) -> dict[int, tuple[int, int, int, int, str]]:
    """``{link id: (origin id, origin slot, target id, target slot, type)}`` from list or dict links."""
    out = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                               link.get("type"))
        else:
            out[link[0]] = (link[1], link[2], link[3], link[4], link[5] if len(link) > 5 else None)
    return out


class _Resolver:
    """Follows links through Reroute and bypassed nodes to the node and slot that really produce a value."""

    def __init__(self, workflow: dict):
        self.nodes = {node["id"]: node for node in workflow["nodes"]}
        self.links = _links(workflow)

    def source(self, link_id: int, depth: int = 0) -> tuple[int, int] | None:
        """``(origin node id, output slot)`` for a link, or None when it comes from nothing that runs."""
        if depth > 64:
            raise WorkflowError(f"link {link_id} passes through more than 64 reroute/bypass nodes (a cycle?)")
        if link_id not in self.links:
            raise WorkflowError(f"link {link_id} is used by a node but missing from the workflow's links")
        origin_id, slot, _, _, link_type = self.links[link_id]
        origin = self.nodes.get(origin_id)
        if origin is None:
            raise WorkflowError(f"link {link_id} starts at node {origin_id}, which is not in the workflow")
        if origin["type"] == "Reroute":
            upstream = (origin.get("inputs") or [{}])[0].get("link")
            return None if upstream is None else self.source(upstream, depth + 1)
        if origin["type"] == "PrimitiveNode":
            return None
        mode = origin.get("mode", 0)
        if mode == MODE_MUTED:
            return None
        if mode == MODE_BYPASS:
            return self._through_bypass(origin, slot, link_type, depth)
        return origin_id, slot

    def _through_bypass(self, node: dict, slot: int, link_type: str | None, depth: int) -> tuple[int, int] | None:
        """The frontend's rule: the input at the same index if its type matches, else the first that does."""
        inputs = node.get("inputs") or []
        out_type = link_type
        outputs = node.get("outputs") or []
        if slot < len(outputs):
            out_type = outputs[slot].get("type", link_type)
        for index in [slot, *range(len(inputs))]:
            if index < len(inputs) and inputs[index].get("type") == out_type and inputs[index].get("link") is not None:
                return self.source(inputs[index]["link"], depth + 1)
        return None


def workflow_to_prompt(workflow: dict, object_info: dict, overrides: dict[str, dict[str, Any]] | None = None) -> dict:
    """The API prompt for a UI-format ``workflow``; ``overrides`` maps a class_type or node id to input values."""
    if not is_ui_workflow(workflow):
        raise WorkflowError("not a UI-format workflow: expected top-level 'nodes' and 'links' lists")
    if (workflow.get("definitions") or {}).get("subgraphs") or (workflow.get("extra") or {}).get("groupNodes"):
        raise WorkflowError("workflows with subgraphs or group nodes are not supported by this converter")
    resolver = _Resolver(workflow)
    prompt = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY or node.get("mode", 0) in (MODE_MUTED, MODE_BYPASS):
            continue
        info = object_info.get(kind)
        if info is None:
            raise WorkflowError(f"node {node['id']} has type {kind!r}, which the server does not know (/object_info)")
        inputs = widget_inputs(node, info)
        for slot in node.get("inputs") or []:
            if slot.get("link") is None:
                continue
            source = resolver.source(slot["link"])
            if source is not None:
                inputs[slot["name"]] = [str(source[0]), source[1]]
            elif resolver.nodes[resolver.links[slot["link"]][0]]["type"] != "PrimitiveNode":
                inputs.pop(slot["name"], None)  # fed by a muted node: leave it unset, as the frontend does
        entry = {"class_type": kind, "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        prompt[str(node["id"])] = entry
    if overrides:
        apply_overrides(prompt, overrides, object_info)
    return prompt


def _known_inputs(info: dict) -> set[str]:
    """Every required and optional input name of a node class."""
    return {name for group in ("required", "optional") for name in (info.get("input", {}).get(group) or {})}


def apply_overrides(prompt: dict, overrides: dict[str, dict[str, Any]], object_info: dict | None = None) -> dict:
    """Set inputs in place: keys are node ids or class_types (every node of that type); returns ``prompt``.

    Raises WorkflowError for a key that matches no node, or (with ``object_info``) an unknown input name.
    """
    for key, values in overrides.items():
        targets = [prompt[key]] if key in prompt else [n for n in prompt.values() if n["class_type"] == key]
        if not targets:
            raise WorkflowError(f"override {key!r} matches no node id or class_type in the prompt")
        for node in targets:
            known = _known_inputs(object_info.get(node["class_type"], {})) if object_info else None
            for name, value in values.items():
                if known is not None and name not in known:
                    raise WorkflowError(
                        f"override {key!r}: {node['class_type']} has no input {name!r}; it has {sorted(known)}"
                    )
                node["inputs"][name] = copy.deepcopy(value)
    return prompt


def nodes_of_type(prompt: dict, class_type: str) -> list[str]:
    """Ids of the prompt's nodes of ``class_type``, in id order."""
    return sorted((i for i, n in prompt.items() if n["class_type"] == class_type), key=lambda i: (len(i), i))
