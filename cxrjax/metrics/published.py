"""The papers' published numbers, in one place, each with its source and the test split it was measured on.

Transcribed from the project's PAPERS.md (itself transcribed from the papers); nothing here is recomputed or filled
in from memory. Where PAPERS.md lacks a number it is None — notably CheXNet's per-finding AUCs, which PAPERS.md does
not give. The split decides what a comparison means:

- OFFICIAL: the NIH official patient-disjoint test list (25,596 images). Two official-split numbers are
  like-for-like: same test images, same labels release aside.
- RANDOM: a paper's own random patient-level split (typically 70/10/20). Same protocol as ours when we use a random
  split, but different test patients, so differences of a point or so mean little.
- UNSTATED: the split is not settled by the available text.
"""

from __future__ import annotations

import dataclasses

from cxrjax.data.findings import FINDINGS

OFFICIAL, RANDOM, UNSTATED = "official", "random", "unstated"


@dataclasses.dataclass(frozen=True)
class Published:
    """One published result row. `auc` is the mean AUC as the source states it (not recomputed)."""

    model: str
    source: str
    split: str
    auc: float | None = None
    per_finding_auc: dict[str, float] | None = None
    w_auc: float | None = None
    d_auc: float | None = None
    n_auc: float | None = None
    map: float | None = None
    note: str = ""


def _per_finding(*values: float) -> dict[str, float]:
    if len(values) != len(FINDINGS):
        raise ValueError(f"{len(values)} values for {len(FINDINGS)} findings")
    return dict(zip(FINDINGS, values))


_CAPSTONE_TABLE = "FPT capstone 2023, per-finding AUC table (official test set)"

# Per-finding AUCs on the official test set, in canonical finding order.
WANG_2017 = Published(
    "Wang et al. 2017, ResNet-50", f"Wang et al. 2017, as tabulated in the {_CAPSTONE_TABLE}", OFFICIAL, auc=0.7451,
    per_finding_auc=_per_finding(0.7003, 0.8100, 0.7700, 0.6614, 0.6933, 0.6687, 0.6580, 0.7993, 0.7032, 0.8052,
                                 0.8330, 0.7859, 0.6835, 0.8717),
    note="the 14 values average 0.7460, not the stated mean 0.7451: one value may be mistranscribed (unverified)")
YAO_2017 = Published(
    "Yao et al. 2017", f"Yao et al. 2017, as tabulated in the {_CAPSTONE_TABLE}", OFFICIAL, auc=0.761,
    per_finding_auc=_per_finding(0.733, 0.856, 0.806, 0.673, 0.718, 0.777, 0.684, 0.805, 0.711, 0.806, 0.842, 0.743,
                                 0.724, 0.775))
DNET_2018 = Published(
    '"DNet" (Guendel et al. 2018)', f"Guendel et al. 2018, as tabulated in the {_CAPSTONE_TABLE}", OFFICIAL,
    auc=0.807,
    per_finding_auc=_per_finding(0.767, 0.883, 0.828, 0.709, 0.821, 0.758, 0.731, 0.846, 0.745, 0.835, 0.895, 0.818,
                                 0.761, 0.896))
CAPSTONE_SWIN_B = Published(
    "Swin-B, class-aware loss (capstone)", _CAPSTONE_TABLE, OFFICIAL, auc=0.874,
    per_finding_auc=_per_finding(0.8395, 0.9365, 0.8721, 0.7642, 0.9131, 0.8669, 0.7999, 0.9183, 0.8062, 0.8898,
                                 0.9520, 0.9008, 0.8497, 0.9231),
    note="far above independent official-split reproductions of DenseNet-121 (about 0.81)")
# The columns a report sets beside its own per-finding AUCs, by short name.
PER_FINDING_OFFICIAL = {"Wang 2017": WANG_2017, "Yao 2017": YAO_2017, "DNet 2018": DNET_2018,
                        "Swin-B (capstone)": CAPSTONE_SWIN_B}

CHEXNET = Published(
    "CheXNet (Rajpurkar et al. 2017), DenseNet-121", "Ge et al. 2018, Table 3", RANDOM, auc=0.8413,
    note="on CheXNet's own random split; its per-finding AUCs are not transcribed in PAPERS.md: unavailable here")

_GE = "Ge et al. 2018"
_GE_TABLE_1 = f"{_GE}, Table 1 (test set, averages)"
GE_2018_TABLE_1 = tuple(
    Published(model, _GE_TABLE_1, RANDOM, auc=auc, w_auc=w_auc, d_auc=d_auc, n_auc=n_auc)
    for model, auc, w_auc, d_auc, n_auc in (
        ("R18", 0.8239, 0.5800, 0.7801, 0.8552),
        ("R18-BL", 0.7680, 0.5543, 0.6825, 0.8307),
        ("R18 + R18-BL", 0.8254, 0.5811, 0.7756, 0.8613),
        ("R18 + R18-F-MSML", 0.8388, 0.5892, 0.7907, 0.8733),
        ("D121", 0.8354, 0.5888, 0.7937, 0.8651),
        ("D121-BL", 0.8107, 0.5770, 0.7523, 0.8529),
        ("D121 + D121-BL", 0.8364, 0.5896, 0.7926, 0.8679),
        ("D121 + D121-F-MSML", 0.8462, 0.5950, 0.8011, 0.8785),
        ("R18 + D121", 0.8355, 0.5883, 0.7930, 0.8653),
        ("R18 + VGG-F-MSML", 0.8438, 0.5932, 0.8011, 0.8743),
        ("D121 + VGG-F-MSML", 0.8537, 0.5952, 0.8060, 0.8827),
    ))
GE_2018_TABLE_2 = tuple(
    Published(f"R18-F-MSML, {strategy} training", f"{_GE}, Table 2", RANDOM, auc=auc)
    for strategy, auc in (("Local", 0.8310), ("Local-Fixed", 0.8356), ("Global", 0.8388)))
GE_2018_TABLE_3 = (
    Published("Wang et al. 2017, ResNet-50", f"{_GE}, Table 3", UNSTATED, auc=0.7363,
              note="differs from the 0.7451 of the official-split table"),
    Published("Yao et al. 2017, DenseNet-121 + LSTM", f"{_GE}, Table 3", UNSTATED, auc=0.7980,
              note="differs from the 0.761 of the official-split table"),
    CHEXNET,
    Published("R18 + VGG-F-MSML", f"{_GE}, Table 3", RANDOM, auc=0.8438),
    Published("D121 + VGG-F-MSML", f"{_GE}, Table 3", RANDOM, auc=0.8537),
)

_ABLATION = "FPT capstone 2023, loss ablation (Swin-B, official split)"
CAPSTONE_LOSS_ABLATION = tuple(
    Published(f"Swin-B, {loss}", _ABLATION, OFFICIAL, auc=auc, map=mean_ap)
    for loss, auc, mean_ap in (
        ("BCE", 0.804, 0.268),
        ("focal", 0.821, 0.272),
        ("asymmetric", 0.835, 0.293),
        ("class-aware without decoupling", 0.870, 0.319),
        ("class-aware without margin", 0.868, 0.312),
        ("class-aware with decoupling and margin", 0.874, 0.338),
    ))

BALTRUSCHAT_2019 = (
    Published("Baltruschat et al. 2019, best model", "secondary source (PAPERS.md)", RANDOM, auc=0.822,
              note="approximate and unverified; 5-fold patient-level re-sampling"),
    Published("Baltruschat et al. 2019, best model", "secondary source (PAPERS.md)", OFFICIAL, auc=0.806,
              note="approximate and unverified"),
)

REFERENCE_REPRODUCTION = Published(
    "independent CheXNet reproduction, DenseNet-121", "shared/data/reference (PAPERS.md, reference points)", RANDOM,
    auc=0.838, note="22,433 test images of a random patient-level split")


def comparable(result: Published, split: str | None) -> str:
    """How a number measured on `split` compares with `result`: "like-for-like", "same protocol", "not comparable",
    or "unknown" (split None).

    Only two official-split numbers share their test images; two random splits share the protocol, not the patients.
    """
    if split is None:
        return "unknown"
    if UNSTATED in (split, result.split) or split != result.split:
        return "not comparable"
    return "like-for-like" if split == OFFICIAL else "same protocol"
