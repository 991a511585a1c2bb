"""Write the UI-format example workflows in example_workflows/ (run after changing a node's widgets).

The files are what the ComfyUI frontend saves and the template browser serves: nodes with their
widget values in declaration order, and links as [id, from_node, from_slot, to_node, to_slot, type].
"""
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "example_workflows"
PROMPT = "a corgi running on a beach at sunset, waves, golden light, highly detailed"
NEGATIVE = "blurry, lowres, watermark, text, deformed"
FPS = 8.0  # AnimateDiff's clips are trained at about 8 fps


class Graph:
    """A tiny builder for UI-format graphs."""

    def __init__(self):
        self.nodes, self.links = [], []

    def node(self, type_: str, widgets: list, inputs: list[tuple[str, str]] = (),
             outputs: list[tuple[str, str]] = (), pos=(0, 0), title: str | None = None) -> int:
        nid = len(self.nodes) + 1
        node = {
            "id": nid, "type": type_, "pos": list(pos), "size": [320, 60 + 26 * (len(widgets) + len(inputs))],
            "flags": {}, "order": nid - 1, "mode": 0,
            "inputs": [{"name": n, "type": t, "link": None} for n, t in inputs],
            "outputs": [{"name": n, "type": t, "links": [], "slot_index": i} for i, (n, t) in enumerate(outputs)],
            "properties": {"Node name for S&R": type_}, "widgets_values": widgets,
        }
        if title:
            node["title"] = title
        self.nodes.append(node)
        return nid

    def widget_input(self, nid: int, name: str, type_: str) -> None:
        """Turn widget ``name`` of node ``nid`` into a linkable input (its value stays in widgets_values)."""
        self.nodes[nid - 1]["inputs"].append({"name": name, "type": type_, "widget": {"name": name}, "link": None})

    def link(self, src: int, slot: int, dst: int, input_name: str) -> None:
        lid = len(self.links) + 1
        s, d = self.nodes[src - 1], self.nodes[dst - 1]
        out = s["outputs"][slot]
        target = next(i for i, inp in enumerate(d["inputs"]) if inp["name"] == input_name)
        out["links"].append(lid)
        d["inputs"][target]["link"] = lid
        self.links.append([lid, src, slot, dst, target, out["type"]])

    def save(self, name: str) -> None:
        data = {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {}, "version": 0.4}
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")


def base(frames: int, size: int = 512, context: list | None = None, noise: str = "default",
         lora: list[tuple[str, float]] = (), motion_file: str = "mm_sd_v15_v2.ckpt",
         ckpt: str = "v1-5-pruned-emaonly.safetensors", sampling: list | None = None,
         sampler: list | None = None) -> Graph:
    """Checkpoint (→ Model Sampling Discrete) → prompts → empty latent → motion module (+ LoRAs, context) →
    Sample Animation → mp4; ``sampler`` = [steps, cfg, sampler_name, scheduler]."""
    g = Graph()
    ck = g.node("CheckpointLoaderSimple", [ckpt], outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
                pos=(0, 0))
    model, model_slot = ck, 0
    if sampling is not None:
        model = g.node("ModelSamplingDiscrete", sampling, [("model", "MODEL")], [("MODEL", "MODEL")], pos=(0, 120))
        g.link(ck, 0, model, "model")
    steps, cfg, sampler_name, scheduler = sampler or [20, 7.5, "euler", "normal"]
    pos = g.node("CLIPTextEncode", [PROMPT], [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 0))
    neg = g.node("CLIPTextEncode", [NEGATIVE], [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 220))
    lat = g.node("EmptyLatentImage", [size, size, frames], outputs=[("LATENT", "LATENT")], pos=(380, 440))
    mm = g.node("KinemaLoadMotionModule", [motion_file, False], outputs=[("MOTION_MODULE", "KINEMA_MOTION_MODULE")],
                pos=(0, 300))
    mm_slot = 0
    for i, (name, strength) in enumerate(lora):
        lo = g.node("KinemaApplyMotionLoRA", [name, strength, 0.0, 1.0],
                    [("motion_module", "KINEMA_MOTION_MODULE")], [("MOTION_MODULE", "KINEMA_MOTION_MODULE")], (0, 450 + 220 * i))
        g.link(mm, mm_slot, lo, "motion_module")
        mm, mm_slot = lo, 0
    sample_inputs = [("model", "MODEL"), ("motion_module", "KINEMA_MOTION_MODULE"), ("positive", "CONDITIONING"),
                     ("negative", "CONDITIONING"), ("latent_image", "LATENT")]
    if context is not None:
        sample_inputs.append(("context_options", "KINEMA_CONTEXT_OPTIONS"))
    sa = g.node("KinemaSampleAnimation",
                [42, "fixed", steps, cfg, sampler_name, scheduler, 1.0, 1.0, "auto (motion module's)", noise],
                sample_inputs, [("LATENT", "LATENT")], (760, 0))
    for src, slot, name in [(model, model_slot, "model"), (mm, mm_slot, "motion_module"), (pos, 0, "positive"),
                            (neg, 0, "negative"), (lat, 0, "latent_image")]:
        g.link(src, slot, sa, name)
    g.link(ck, 1, pos, "clip")
    g.link(ck, 1, neg, "clip")
    if context is not None:
        cx = g.node("KinemaContextScheduler", context, outputs=[("CONTEXT_OPTIONS", "KINEMA_CONTEXT_OPTIONS")],
                    pos=(380, 620))
        g.link(cx, 0, sa, "context_options")
    dec = g.node("KinemaDecodeFrames", [4], [("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")], (1140, 0))
    g.link(sa, 0, dec, "samples")
    g.link(ck, 2, dec, "vae")
    save_video(g, dec, (1500, 0))
    return g


def save_video(g: Graph, images: int, pos: tuple[int, int], fps: float = FPS) -> int:
    """Core Create Video (the graph's one frame rate) → Save Video as mp4/h264; returns the Save Video node."""
    video = g.node("CreateVideo", [fps], [("images", "IMAGE"), ("audio", "AUDIO")], [("VIDEO", "VIDEO")], pos)
    g.link(images, 0, video, "images")
    save = g.node("SaveVideo", ["video/animatediff", "mp4", "h264"], [("video", "VIDEO")],
                  pos=(pos[0] + 360, pos[1]))
    g.link(video, 0, save, "video")
    return save


def sdxl(frames: int = 16) -> Graph:
    """SDXL text-to-video at SDXL's native 1024x1024 with the AnimateDiff-SDXL beta module (trained on 16 frames)."""
    return base(frames, 1024, motion_file="mm_sdxl_v10_beta.ckpt", ckpt="sd_xl_base_1.0.safetensors")


def sd15_prompts(prompt: str) -> tuple[Graph, int, int, int]:
    """A new graph with an SD1.5 checkpoint and positive/negative CLIP Text Encode: (graph, ckpt, pos, neg)."""
    g = Graph()
    ck = g.node("CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"],
                outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")], pos=(0, 0))
    pos = g.node("CLIPTextEncode", [prompt], [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 0))
    neg = g.node("CLIPTextEncode", [NEGATIVE], [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 220))
    return g, ck, pos, neg


def video_in(g: Graph, frames: int, size: int) -> tuple[int, int, int, int]:
    """Load Video → Get Video Components → first ``frames`` frames → resized to ``size``: (load, parts, cut, scale)."""
    load = g.node("LoadVideo", ["source.mp4", "image"], outputs=[("VIDEO", "VIDEO")], pos=(0, 440))
    parts = g.node("GetVideoComponents", [], [("video", "VIDEO")],
                   [("images", "IMAGE"), ("audio", "AUDIO"), ("fps", "FLOAT")], (0, 760))
    cut = g.node("ImageFromBatch", [0, frames], [("image", "IMAGE")], [("IMAGE", "IMAGE")], (0, 900),
                 title="First frames")
    scale = g.node("ImageScale", ["bilinear", size, size, "center"], [("image", "IMAGE")], [("IMAGE", "IMAGE")],
                   (0, 1080))
    return load, parts, cut, scale


V2V_PROMPT = "a watercolor painting of a person dancing, soft brush strokes, pastel colors"


def video_to_video(frames: int = 48, size: int = 512) -> Graph:
    """Video in → Canny hints + VAE Encode → Apply ControlNet → windows → Sample Animation (denoise 0.6) → video out.

    The frame rate appears once: Get Video Components' fps feeds Create Video, so the output keeps the source's.
    """
    g, ck, pos, neg = sd15_prompts(V2V_PROMPT)
    load, parts, cut, scale = video_in(g, frames, size)
    enc = g.node("VAEEncode", [], [("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")], (380, 440))
    canny = g.node("Canny", [0.4, 0.8], [("image", "IMAGE")], [("IMAGE", "IMAGE")], (380, 600))
    cn = g.node("ControlNetLoader", ["control_v11p_sd15_canny.pth"], outputs=[("CONTROL_NET", "CONTROL_NET")],
                pos=(380, 800))
    apply = g.node("ControlNetApplyAdvanced", [1.0, 0.0, 1.0],
                   [("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("control_net", "CONTROL_NET"),
                    ("image", "IMAGE"), ("vae", "VAE")],
                   [("positive", "CONDITIONING"), ("negative", "CONDITIONING")], (760, 440))
    mm = g.node("KinemaLoadMotionModule", ["mm_sd_v15_v2.ckpt", False],
                outputs=[("MOTION_MODULE", "KINEMA_MOTION_MODULE")], pos=(760, 760))
    cx = g.node("KinemaContextScheduler", [16, 4, "looped_uniform", "pyramid", 1, False, False, False],
                outputs=[("CONTEXT_OPTIONS", "KINEMA_CONTEXT_OPTIONS")], pos=(760, 900))
    sa = g.node("KinemaSampleAnimation",
                [42, "fixed", 20, 7.5, "euler", "normal", 0.6, 1.0, "auto (motion module's)", "default"],
                [("model", "MODEL"), ("motion_module", "KINEMA_MOTION_MODULE"), ("positive", "CONDITIONING"),
                 ("negative", "CONDITIONING"), ("latent_image", "LATENT"),
                 ("context_options", "KINEMA_CONTEXT_OPTIONS")], [("LATENT", "LATENT")], (1140, 0))
    dec = g.node("KinemaDecodeFrames", [4], [("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")],
                 (1520, 0))
    video = g.node("CreateVideo", [8.0], [("images", "IMAGE"), ("audio", "AUDIO")], [("VIDEO", "VIDEO")],
                   (1520, 260))
    g.widget_input(video, "fps", "FLOAT")
    save = g.node("SaveVideo", ["video/kinema_v2v", "auto", "auto"], [("video", "VIDEO")], pos=(1900, 0))
    for src, slot, dst, name in [
        (ck, 1, pos, "clip"), (ck, 1, neg, "clip"), (load, 0, parts, "video"), (parts, 0, cut, "image"),
        (cut, 0, scale, "image"), (scale, 0, enc, "pixels"), (ck, 2, enc, "vae"), (scale, 0, canny, "image"),
        (pos, 0, apply, "positive"), (neg, 0, apply, "negative"), (cn, 0, apply, "control_net"),
        (canny, 0, apply, "image"), (ck, 0, sa, "model"), (mm, 0, sa, "motion_module"), (apply, 0, sa, "positive"),
        (apply, 1, sa, "negative"), (enc, 0, sa, "latent_image"), (cx, 0, sa, "context_options"),
        (sa, 0, dec, "samples"), (ck, 2, dec, "vae"), (dec, 0, video, "images"), (parts, 2, video, "fps"),
        (video, 0, save, "video"),
    ]:
        g.link(src, slot, dst, name)
    return g


DOMAIN_ADAPTER = "v3_sd15_adapter.ckpt"
SPARSECTRL_FILES = {"rgb": "v3_sd15_sparsectrl_rgb.ckpt", "scribble": "v3_sd15_sparsectrl_scribble.ckpt"}


def sparsectrl(kind: str, indices: str, images: list[str], frames: int = 16, size: int = 512) -> Graph:
    """Load Image(s) → (Image Batch) → resize to the latent size (core ImageScale) → Apply SparseCtrl at ``indices``
    with the v3 motion module and the v3 domain adapter (core Load LoRA, model only) → Sample Animation → Decode
    Frames → Keyframe Colour Match → mp4."""
    g = Graph()
    ck = g.node("CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"],
                outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")], pos=(0, 0))
    adapter = g.node("LoraLoaderModelOnly", [DOMAIN_ADAPTER, 1.0], [("model", "MODEL")], [("MODEL", "MODEL")],
                     (0, 160), title="v3 domain adapter")
    pos = g.node("CLIPTextEncode", [PROMPT], [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 0))
    neg = g.node("CLIPTextEncode", [NEGATIVE], [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 220))
    lat = g.node("EmptyLatentImage", [size, size, frames], outputs=[("LATENT", "LATENT")], pos=(380, 440))
    loads = [g.node("LoadImage", [name, "image"], outputs=[("IMAGE", "IMAGE"), ("MASK", "MASK")],
                    pos=(0, 300 + 360 * i), title=f"Keyframe {i + 1}") for i, name in enumerate(images)]
    picture = loads[0]
    for load in loads[1:]:  # one batch, in the order of the frame indices
        batch = g.node("ImageBatch", [], [("image1", "IMAGE"), ("image2", "IMAGE")], [("IMAGE", "IMAGE")],
                       (380, 620))
        g.link(picture, 0, batch, "image1")
        g.link(load, 0, batch, "image2")
        picture = batch
    scale = g.node("ImageScale", ["bilinear", size, size, "center"], [("image", "IMAGE")], [("IMAGE", "IMAGE")],
                   (380, 760), title="Resize to the latent size")
    sc = g.node("KinemaLoadSparseCtrl", [SPARSECTRL_FILES[kind]], outputs=[("SPARSE_CTRL", "KINEMA_SPARSECTRL")],
                pos=(380, 920))
    apply = g.node("KinemaApplySparseCtrl", [indices, 1.0, 0.0, 1.0],
                   [("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("sparse_ctrl", "KINEMA_SPARSECTRL"),
                    ("images", "IMAGE"), ("vae", "VAE")],
                   [("positive", "CONDITIONING"), ("negative", "CONDITIONING")], (760, 440))
    mm = g.node("KinemaLoadMotionModule", ["v3_sd15_mm.ckpt", False],
                outputs=[("MOTION_MODULE", "KINEMA_MOTION_MODULE")], pos=(760, 760))
    sa = g.node("KinemaSampleAnimation",
                [42, "fixed", 20, 7.5, "euler", "normal", 1.0, 1.0, "auto (motion module's)", "default"],
                [("model", "MODEL"), ("motion_module", "KINEMA_MOTION_MODULE"), ("positive", "CONDITIONING"),
                 ("negative", "CONDITIONING"), ("latent_image", "LATENT")], [("LATENT", "LATENT")], (1140, 0))
    dec = g.node("KinemaDecodeFrames", [4], [("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")],
                 (1520, 0))
    for src, slot, dst, name in [
        (ck, 1, pos, "clip"), (ck, 1, neg, "clip"), (picture, 0, scale, "image"), (pos, 0, apply, "positive"),
        (neg, 0, apply, "negative"), (sc, 0, apply, "sparse_ctrl"), (scale, 0, apply, "images"),
        (ck, 2, apply, "vae"), (ck, 0, adapter, "model"), (adapter, 0, sa, "model"), (mm, 0, sa, "motion_module"),
        (apply, 0, sa, "positive"), (apply, 1, sa, "negative"), (lat, 0, sa, "latent_image"), (sa, 0, dec, "samples"),
        (ck, 2, dec, "vae"),
    ]:
        g.link(src, slot, dst, name)
    colour = g.node("KinemaKeyframeColourMatch", [indices, 8, 1.0], [("images", "IMAGE"), ("reference", "IMAGE")],
                    [("IMAGE", "IMAGE")], (1520, 260))
    g.link(dec, 0, colour, "images")
    if kind == "rgb":  # an RGB keyframe is the picture itself: match the clip's colours to it
        g.link(scale, 0, colour, "reference")
    save_video(g, colour, (1520, 520))
    return g


def freeinit(frames: int = 16) -> Graph:
    """Text-to-video with FreeInit (2 iterations, butterworth 0.25/0.25, order 4) linked into Sample Animation."""
    g = base(frames)
    sa = next(n["id"] for n in g.nodes if n["type"] == "KinemaSampleAnimation")
    g.nodes[sa - 1]["inputs"].append({"name": "free_init", "type": "KINEMA_FREE_INIT", "link": None})
    fi = g.node("KinemaFreeInit", [2, "butterworth", 0.25, 0.25, 4, False],
                outputs=[("FREE_INIT", "KINEMA_FREE_INIT")], pos=(380, 620))
    g.link(fi, 0, sa, "free_init")
    return g


TRAIN_PROMPT = "a city street, the camera panning right, photo"


def train_motion_lora(frames: int = 16, size: int = 512) -> Graph:
    """Video in → frames → Train MotionLoRA (images + VAE) → Sample Animation with the trained module → video out,
    and the loss per step → core's Plot Loss Graph."""
    g, ck, pos, neg = sd15_prompts(TRAIN_PROMPT)
    load, parts, cut, scale = video_in(g, frames, size)
    mm = g.node("KinemaLoadMotionModule", ["mm_sd_v15_v2.ckpt", False],
                outputs=[("MOTION_MODULE", "KINEMA_MOTION_MODULE")], pos=(380, 440))
    train = g.node("KinemaTrainMotionLoRA",
                   [8, 300, 1e-4, 2, 0, True, 42, "fixed", True, "auto (motion module's)", "kinema_motion_lora"],
                   [("model", "MODEL"), ("motion_module", "KINEMA_MOTION_MODULE"), ("positive", "CONDITIONING"),
                    ("images", "IMAGE"), ("vae", "VAE")],
                   [("MOTION_MODULE", "KINEMA_MOTION_MODULE"), ("loss_map", "LOSS_MAP")], (760, 440))
    graph = g.node("LossGraphNode", ["loss_graph"], [("loss", "LOSS_MAP")], pos=(1140, 600))
    lat = g.node("EmptyLatentImage", [size, size, frames], outputs=[("LATENT", "LATENT")], pos=(760, 800))
    sa = g.node("KinemaSampleAnimation",
                [7, "fixed", 20, 7.5, "euler", "normal", 1.0, 1.0, "auto (motion module's)", "default"],
                [("model", "MODEL"), ("motion_module", "KINEMA_MOTION_MODULE"), ("positive", "CONDITIONING"),
                 ("negative", "CONDITIONING"), ("latent_image", "LATENT")], [("LATENT", "LATENT")], (1140, 0))
    dec = g.node("KinemaDecodeFrames", [4], [("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")],
                 (1520, 0))
    for src, slot, dst, name in [
        (ck, 1, pos, "clip"), (ck, 1, neg, "clip"), (load, 0, parts, "video"), (parts, 0, cut, "image"),
        (cut, 0, scale, "image"), (ck, 0, train, "model"), (mm, 0, train, "motion_module"), (pos, 0, train, "positive"),
        (scale, 0, train, "images"), (ck, 2, train, "vae"), (train, 1, graph, "loss"), (ck, 0, sa, "model"),
        (train, 0, sa, "motion_module"), (pos, 0, sa, "positive"), (neg, 0, sa, "negative"),
        (lat, 0, sa, "latent_image"), (sa, 0, dec, "samples"), (ck, 2, dec, "vae"),
    ]:
        g.link(src, slot, dst, name)
    save_video(g, dec, (1520, 260))
    return g


TRAVEL = "0: a flower bud on a green stem\n16: a (flower in full bloom:1.2), open petals\n32: a wilted flower, dry petals"
TRAVEL_STYLE = "macro photograph, soft light, highly detailed"


def prompt_travel(frames: int = 48, size: int = 512) -> Graph:
    """Prompt Schedule (three keyframes, linear) as the positive, frame count from the latent → windows → mp4."""
    g = Graph()
    ck = g.node("CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"],
                outputs=[("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")], pos=(0, 0))
    lat = g.node("EmptyLatentImage", [size, size, frames], outputs=[("LATENT", "LATENT")], pos=(0, 300))
    pos = g.node("KinemaPromptSchedule", [TRAVEL, TRAVEL_STYLE, "", frames, "linear"],
                 [("clip", "CLIP"), ("latent", "LATENT")], [("CONDITIONING", "CONDITIONING")], (380, 0))
    neg = g.node("CLIPTextEncode", [NEGATIVE], [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], (380, 300))
    mm = g.node("KinemaLoadMotionModule", ["mm_sd_v15_v2.ckpt", False],
                outputs=[("MOTION_MODULE", "KINEMA_MOTION_MODULE")], pos=(0, 460))
    cx = g.node("KinemaContextScheduler", [16, 4, "looped_uniform", "pyramid", 1, False, False, False],
                outputs=[("CONTEXT_OPTIONS", "KINEMA_CONTEXT_OPTIONS")], pos=(380, 520))
    sa = g.node("KinemaSampleAnimation",
                [42, "fixed", 20, 7.5, "euler", "normal", 1.0, 1.0, "auto (motion module's)", "default"],
                [("model", "MODEL"), ("motion_module", "KINEMA_MOTION_MODULE"), ("positive", "CONDITIONING"),
                 ("negative", "CONDITIONING"), ("latent_image", "LATENT"),
                 ("context_options", "KINEMA_CONTEXT_OPTIONS")], [("LATENT", "LATENT")], (760, 0))
    dec = g.node("KinemaDecodeFrames", [4], [("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")], (1140, 0))
    for src, slot, dst, name in [
        (ck, 1, pos, "clip"), (lat, 0, pos, "latent"), (ck, 1, neg, "clip"), (ck, 0, sa, "model"),
        (mm, 0, sa, "motion_module"), (pos, 0, sa, "positive"), (neg, 0, sa, "negative"), (lat, 0, sa, "latent_image"),
        (cx, 0, sa, "context_options"), (sa, 0, dec, "samples"), (ck, 2, dec, "vae"),
    ]:
        g.link(src, slot, dst, name)
    save_video(g, dec, (1500, 0))
    return g


def main() -> None:
    OUT.mkdir(exist_ok=True)
    base(16).save("text_to_video_16_frames")
    base(64, context=[16, 4, "looped_uniform", "pyramid", 1, False, False, False], noise="FreeNoise").save(
        "long_video_64_frames_context_windows")
    base(16, lora=[("v2_lora_ZoomIn.ckpt", 0.8), ("v2_lora_PanLeft.ckpt", 0.5)]).save(
        "motion_lora_zoom_in_and_pan_left")
    sdxl().save("sdxl_text_to_video_16_frames")
    base(16, motion_file="AnimateLCM_sd15_t2v.ckpt", sampling=["lcm", False],
         sampler=[8, 1.5, "lcm", "sgm_uniform"]).save("animatelcm_8_steps")
    video_to_video().save("video_to_video_controlnet")
    sparsectrl("rgb", "0", ["example.png"]).save("image_to_video_sparsectrl")
    sparsectrl("scribble", "0,15", ["scribble_start.png", "scribble_end.png"]).save("sparsectrl_scribble_keyframes")
    freeinit().save("freeinit_16_frames")
    train_motion_lora().save("train_motion_lora")
    prompt_travel().save("prompt_travel_48_frames")


if __name__ == "__main__":
    main()
