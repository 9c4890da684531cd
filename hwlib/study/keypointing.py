"""The keypoint models as the study trains, predicts and scores them: batches, training from scratch, decodings, the
record's metrics and the evaluations the run store keeps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from hwlib.config import KEYPOINT_NAMES, KeypointConfig, train_data_seed
from hwlib.study.splits import VAL_SEED, keypoint_data
from hwlib.vision import keypoints as kp
from hwlib.vision.metrics import PCK_THRESHOLDS, mean_pixel_error, pck, pck_auc, pck_per_keypoint
from hwlib.vision.train import autocast, fit, pick_device, resolve_precision


def load_keypoint_model(path) -> tuple[torch.nn.Module, str, KeypointConfig]:
    """A keypoint model rebuilt from a checkpoint's stored config and model class, with its weights.

    The method comes from the stored class (``HeatmapNet`` -> ``"heatmap"``, ``RegressionNet`` ->
    ``"regression"``, ``IntegralNet`` -> ``"integral"``); bf16 weights are cast to the float32 model.

    Returns:
        ``(model, method, cfg)``: the model in eval mode on the CPU (``[B, 1, 128, 128]`` -> heatmaps
        ``[B, 5, H, H]`` or normalized ``[B, 5, 2]``), its method and :class:`~hwlib.config.KeypointConfig`.

    Raises:
        CheckpointError: missing, truncated or corrupt file; not an hwlib checkpoint; a detector;
        unknown config keys; weights of another architecture. The message names the file.
    """
    from hwlib.study.checkpoints import load_model

    model, cfg, _, method, _ = load_model(path, task="keypoint")
    return model, method, cfg


def keypoint_batches(images, keypoints, batch_size: int):
    """``get_batch`` for :func:`hwlib.vision.train.fit`: shuffled epochs of (images, keypoints px)."""
    n = len(images)
    state = {"perm": None, "pos": n}

    def get_batch(step, rng):
        if state["pos"] + batch_size > n:
            state["perm"], state["pos"] = torch.from_numpy(rng.permutation(n)), 0
        idx = state["perm"][state["pos"]:state["pos"] + batch_size]
        state["pos"] += batch_size
        return images[idx], keypoints[idx]
    return get_batch


@torch.no_grad()
def predict_keypoints(model, method: str, images, cfg: KeypointConfig, batch_size: int = 200,
                      device: str = "auto", precision: str = "auto", return_heatmaps: bool = False,
                      decodings=None) -> dict:
    """Keypoints of images ``[N, 1, 128, 128]`` for every decoding of ``method`` in
    :data:`hwlib.vision.keypoints.DECODINGS` (or only those named in ``decodings``): ``{decoding name: Tensor[N, 5, 2]}``
    (x, y) image pixels, e.g. ``{"heatmap_dark", "heatmap_argmax"}`` for a heatmap model. With ``return_heatmaps``
    also the raw outputs under ``"heatmaps"`` (``[N, 5, H, H]``, heatmap models only)."""
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    was_training = model.training
    model.eval().to(dev)
    outs = []
    for s in range(0, len(images), batch_size):
        with autocast(dev, prec):
            outs.append(model(images[s:s + batch_size].to(dev)).float().cpu())
    model.train(was_training)
    out = torch.cat(outs) if outs else torch.zeros(0, 5, 2)
    res = kp.decode_outputs(method, out, cfg, decodings)
    if return_heatmaps and out.dim() == 4:
        res["heatmaps"] = out
    return res


def heatmap_mse(outputs, keypoints, cfg: KeypointConfig) -> float:
    """The seed's criterion: mean squared error between a heatmap model's outputs ``[N, 5, H, H]`` (as
    target-unit maps, :func:`hwlib.vision.keypoints.heatmaps_as_targets`) and the Gaussian targets of ``keypoints``
    ``[N, 5, 2]`` (image px). Not comparable across heatmap sizes or sigmas."""
    target = kp.encode_heatmaps(keypoints, 128, cfg.heatmap_size, cfg.sigma)
    return float(((kp.heatmaps_as_targets(outputs, cfg) - target) ** 2).mean())


def _train_keypoint_model(method, cfg, seed, ckpt, name, steps, device, precision, progress, validate):
    images, keypoints, _ = keypoint_data(cfg.n_train, train_data_seed("keypoint", seed), cfg.hard_fraction)
    val_images, val_kps, _ = keypoint_data(cfg.n_val, VAL_SEED, cfg.hard_fraction)
    torch.manual_seed(seed)
    model = kp.build_keypoint_model(method, cfg)

    def evaluate(m):
        head = kp.headline_decoding(method)
        preds = predict_keypoints(m, method, val_images, cfg, device=device, precision=precision,
                                  return_heatmaps=True, decodings=(head,))
        out = {f"pck_{tau:g}": v for tau, v in pck(preds[head], val_kps).items()}
        if "heatmaps" in preds:
            out["heatmap_mse"] = heatmap_mse(preds["heatmaps"], val_kps, cfg)
        return out

    hist = fit(model, kp.KeypointLoss(method, cfg), keypoint_batches(images, keypoints, cfg.batch_size),
               steps=steps, lr=cfg.lr_of(method), weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_steps,
               seed=seed, device=device, precision=precision, evaluate=evaluate if validate else None,
               eval_every=cfg.eval_every, checkpoint=ckpt, config=cfg, desc=name, progress=progress, ema=cfg.ema,
               grad_clip=cfg.grad_clip, optimizer=cfg.optimizer, schedule=cfg.schedule)
    return model, hist


def keypoint_metrics(method: str, preds: dict, gt, subsets: dict | None = None) -> dict:
    """One keypoint model's metrics for a record (SPEC §7).

    Args:
        method: ``"heatmap"``, ``"regression"`` or ``"integral"``.
        preds: ``{decoding name: Tensor[N, 5, 2]}`` (x, y) image px, as :func:`predict_keypoints` returns.
        gt: ``Tensor[N, 5, 2]`` ground truth (x, y) image px.
        subsets: ``{name: bool [N]}`` figures to score apart (e.g. :func:`keypoint_subsets` of the split's meta).

    Returns:
        the headline decoding's ``pck_<tau>`` (bbox-diagonal norm, tau in 0.02, 0.05 .. 0.2), ``pck_auc_0.1`` (area
        under the PCK curve over tau in [0, 0.1], :func:`hwlib.vision.metrics.pck_auc`), ``pck_torso_<tau>``,
        ``pck_per_keypoint_0.05`` (``{keypoint: PCK}``), ``mean_px_error`` and ``mean_px_error_per_keypoint``;
        the method's other decodings, the same keys, under ``"decodings"`` (``{name: {...}}``); with ``subsets``,
        ``"subsets"``: ``{name: {"pck_0.05", "pck_per_keypoint_0.05"}}`` of the headline decoding on those figures
        and ``{"not_" + name: ...}`` on the others (NaN where a subset is empty).
    """
    def one(p):
        out = {f"pck_{t:g}": v for t, v in pck(p, gt, (0.02, *PCK_THRESHOLDS)).items()}
        out["pck_auc_0.1"] = pck_auc(p, gt, 0.1)
        out.update({f"pck_torso_{t:g}": v for t, v in pck(p, gt, norm="torso").items()})
        out["pck_per_keypoint_0.05"] = dict(zip(KEYPOINT_NAMES, pck_per_keypoint(p, gt, 0.05).tolist()))
        err = mean_pixel_error(p, gt)
        out["mean_px_error"] = float(err.mean())
        out["mean_px_error_per_keypoint"] = dict(zip(KEYPOINT_NAMES, err.tolist()))
        return out

    def part(p, g):
        if len(g) == 0:
            return {"pck_0.05": math.nan, "pck_per_keypoint_0.05": dict.fromkeys(KEYPOINT_NAMES, math.nan)}
        return {"pck_0.05": pck(p, g)[0.05],
                "pck_per_keypoint_0.05": dict(zip(KEYPOINT_NAMES, pck_per_keypoint(p, g, 0.05).tolist()))}

    head = kp.headline_decoding(method)
    out = one(preds[head])
    others = {d: one(p) for d, p in preds.items() if d != head and d in kp.DECODINGS}
    if others:
        out["decodings"] = others
    if subsets:
        out["subsets"] = {}
        for name, mask in subsets.items():
            m = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
            out["subsets"][name] = part(preds[head][m], gt[m])
            out["subsets"]["not_" + name] = part(preds[head][~m], gt[~m])
    return out


def keypoint_subsets(meta: dict) -> dict:
    """The figures scored apart in every keypoint record: ``hand_under_brighter`` (a hand hidden under a brighter
    stroke, :func:`hwlib.vision.data.make_keypoint_data`) and ``ambiguous`` (hands closer than two line widths);
    ``{name: bool [N]}``."""
    return {"hand_under_brighter": np.asarray(meta["hand_under_brighter"]).any(1),
            "ambiguous": np.asarray(meta["ambiguous"], dtype=bool)}


def decoding_metrics(record: dict, decoding: str, stat: str = "mean") -> dict:
    """A record's (JSON) metrics of one decoding: the top level for the headline decoding, else
    ``record[stat]["decodings"][decoding]``. ``stat``: ``"mean"``, ``"std"`` or ``"ci95"``."""
    d = kp.DECODINGS[decoding]
    if kp.headline_decoding(d.method) == decoding:
        return record[stat]
    return record[stat]["decodings"][decoding]


def _evaluate_keypoints(model, method: str, cfg: KeypointConfig, specs, device="auto", precision="auto") -> list:
    """``[(metrics, predictions or None)]``, one per spec of :func:`keypoint_spec`."""
    out = []
    for spec in specs:
        images, gt, meta = keypoint_data(spec["n"], spec["seed"], spec["hard_fraction"])
        preds = predict_keypoints(model, method, images, cfg, device=device, precision=precision,
                                  return_heatmaps=spec["heatmap_mse"])
        decoded = {d: preds[d] for d in spec["decodings"]}
        m = keypoint_metrics(method, decoded, gt, keypoint_subsets(meta) if spec["subsets"] else None)
        if spec["heatmap_mse"]:
            m["heatmap_mse"] = heatmap_mse(preds["heatmaps"], gt, cfg)
        out.append((m, decoded if spec["predictions"] else None))
    return out
