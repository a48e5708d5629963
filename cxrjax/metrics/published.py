"""The papers' published numbers, in one place, each with its source, the test split it was measured on and the labels
version it was scored against; and whether a run's numbers can be set beside them.

Transcribed from the papers' tables (each record names its paper and table); nothing here is recomputed or filled in
from memory. Where a paper's table is not transcribed a number is None — notably CheXNet's per-finding AUCs. Three
facts decide what a comparison means, and `comparison` checks all of them:

- The data: only the real NIH release (all of its official test images, nearly all of its images:
  `is_real_release`) can be compared with the papers; a synthetic or partial release cannot, whatever its split.
- The split. OFFICIAL: the NIH official patient-disjoint test list (25,596 images); two official-split numbers on the
  same labels are like-for-like, same test images. RANDOM: a paper's own random patient-level split (typically
  70/10/20); the same protocol as ours when we use a random split, but different test patients, so differences of a
  point or so mean little. UNSTATED: the split is not settled by the paper's text.
- The labels: the Data_Entry CSV the findings come from, "2017" (the original) or "v2020" (181 images relabelled).
  The v2020 CSV appeared in 2020, so papers from before then scored against the 2017 one; a later source that does
  not say which it used is UNSTATED.
"""

from __future__ import annotations

import dataclasses

from cxrjax.data.findings import FINDINGS

OFFICIAL, RANDOM, UNSTATED = "official", "random", "unstated"
LABELS_2017, LABELS_V2020 = "2017", "v2020"  # as `config.data.labels` names the Data_Entry CSVs
TEST = "test"  # the split of a protocol that published numbers are measured on

RELEASE_IMAGES = 112_120  # rows of either Data_Entry CSV, one image each
OFFICIAL_TEST_IMAGES = 25_596  # names in test_list.txt
# Shards hold the real release when they hold every image of the official test list, and no more, and at least this
# share of all images, and no more. The official-split papers were measured on exactly those test images, so one
# missing changes the test set; a few training images lost to a damaged download change the model too little to
# matter. A partial download misses a whole archive (5-10k images, at least 4%), and a synthetic release (the demo's:
# thousands of images) falls far short. Counts cannot tell a full-size imitation of the release from the release.
MIN_RELEASE_SHARE = 0.99


@dataclasses.dataclass(frozen=True)
class Published:
    """One published result row. `auc` is the mean AUC as the source states it (not recomputed); `labels` the
    Data_Entry CSV it was scored against, UNSTATED where neither the source nor its date settles it."""

    model: str
    source: str
    split: str
    labels: str = UNSTATED
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
    "Wang et al. 2017, ResNet-50", f"Wang et al. 2017, as tabulated in the {_CAPSTONE_TABLE}", OFFICIAL,
    labels=LABELS_2017, auc=0.7451,
    per_finding_auc=_per_finding(0.7003, 0.8100, 0.7700, 0.6614, 0.6933, 0.6687, 0.6580, 0.7993, 0.7032, 0.8052,
                                 0.8330, 0.7859, 0.6835, 0.8717),
    note="the 14 values average 0.7460, not the stated mean 0.7451: one value may be mistranscribed (unverified)")
YAO_2017 = Published(
    "Yao et al. 2017", f"Yao et al. 2017, as tabulated in the {_CAPSTONE_TABLE}", OFFICIAL, labels=LABELS_2017,
    auc=0.761,
    per_finding_auc=_per_finding(0.733, 0.856, 0.806, 0.673, 0.718, 0.777, 0.684, 0.805, 0.711, 0.806, 0.842, 0.743,
                                 0.724, 0.775))
DNET_2018 = Published(
    '"DNet" (Guendel et al. 2018)', f"Guendel et al. 2018, as tabulated in the {_CAPSTONE_TABLE}", OFFICIAL,
    labels=LABELS_2017, auc=0.807,
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
    "CheXNet (Rajpurkar et al. 2017), DenseNet-121", "Ge et al. 2018, Table 3", RANDOM, labels=LABELS_2017,
    auc=0.8413, note="on CheXNet's own random split; its per-finding AUCs are not transcribed here")

_GE = "Ge et al. 2018"
_GE_TABLE_1 = f"{_GE}, Table 1 (test set, averages)"
GE_2018_TABLE_1 = tuple(
    Published(model, _GE_TABLE_1, RANDOM, labels=LABELS_2017, auc=auc, w_auc=w_auc, d_auc=d_auc, n_auc=n_auc)
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
# Table 2 compares R18-F-MSML's training strategies, but its Global 0.8388 is Table 1's R18 + R18-F-MSML ensemble
# (the single R18-F-MSML has no number in Table 1): read as the ensemble with R18 under each strategy.
GE_2018_TABLE_2 = tuple(
    Published(f"R18 + R18-F-MSML (ensemble), {strategy} training", f"{_GE}, Table 2", RANDOM, labels=LABELS_2017,
              auc=auc, note="read as the ensemble with R18: Global equals Table 1's R18 + R18-F-MSML")
    for strategy, auc in (("Local", 0.8310), ("Local-Fixed", 0.8356), ("Global", 0.8388)))
GE_2018_TABLE_3 = (
    Published("Wang et al. 2017, ResNet-50", f"{_GE}, Table 3", UNSTATED, labels=LABELS_2017, auc=0.7363,
              note="differs from the 0.7451 of the official-split table"),
    Published("Yao et al. 2017, DenseNet-121 + LSTM", f"{_GE}, Table 3", UNSTATED, labels=LABELS_2017, auc=0.7980,
              note="differs from the 0.761 of the official-split table"),
    CHEXNET,
    Published("R18 + VGG-F-MSML", f"{_GE}, Table 3", RANDOM, labels=LABELS_2017, auc=0.8438),
    Published("D121 + VGG-F-MSML", f"{_GE}, Table 3", RANDOM, labels=LABELS_2017, auc=0.8537),
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

_BALTRUSCHAT = "Baltruschat et al. 2019 (Sci Rep 9:6381), as quoted by a secondary source; table not checked"
# The source quotes the "best model" only; the journal's abstract names its best as the X-ray-specific ResNet-38 with
# non-image data (experiments/baltruschat2019_resnet38.py). No other row's number is at hand.
_BALTRUSCHAT_BEST = "Baltruschat et al. 2019, best model (X-ray-specific ResNet-38 + non-image data)"
BALTRUSCHAT_2019 = (
    Published(_BALTRUSCHAT_BEST, _BALTRUSCHAT, RANDOM, labels=LABELS_2017, auc=0.822,
              note="approximate and unverified; 5-fold patient-level re-sampling"),
    Published(_BALTRUSCHAT_BEST, _BALTRUSCHAT, OFFICIAL, labels=LABELS_2017, auc=0.806,
              note="approximate and unverified"),
)

REFERENCE_REPRODUCTION = Published(
    "independent CheXNet reproduction, DenseNet-121", "an independent public CheXNet reproduction's per-finding AUCs",
    RANDOM, labels=LABELS_V2020, auc=0.838,
    note="22,433 test images of its own random patient-level split, scored against the v2020 labels")


@dataclasses.dataclass(frozen=True)
class Measured:
    """What a run's numbers were measured on; None where a fact is not known, which leaves the comparison unknown.

    `protocol`: the split protocol ("official", "random", "kfold"); `split`: which of its splits was evaluated
    ("test", "val", ...); `labels`: the shards' labels version ("v2020" or "2017"); `num_images`: images in the shards;
    `num_official_test`: of those, the images on the official test list.
    """

    protocol: str | None = None
    split: str | None = None
    labels: str | None = None
    num_images: int | None = None
    num_official_test: int | None = None


def is_real_release(num_images: int, num_official_test: int) -> bool:
    """Whether shards of `num_images` images, `num_official_test` of them on the official test list, are the real
    NIH release (see `MIN_RELEASE_SHARE`)."""
    return (num_official_test == OFFICIAL_TEST_IMAGES
            and MIN_RELEASE_SHARE * RELEASE_IMAGES <= num_images <= RELEASE_IMAGES)


def run_mismatch(measured: Measured | None) -> str | None:
    """Why no published number applies to the run at all (not the real release, or not a test split); None when
    that is not ruled out."""
    if measured is None:
        return None
    if measured.num_images is not None and measured.num_official_test is not None and not is_real_release(
            measured.num_images, measured.num_official_test):
        return (f"its shards hold {measured.num_images:,} images, {measured.num_official_test:,} of them on the "
                f"official test list, not the NIH release's {RELEASE_IMAGES:,} and {OFFICIAL_TEST_IMAGES:,}: "
                "synthetic or partial data")
    if measured.split is not None and measured.split != TEST:
        return f"it is measured on the {measured.split} split, and the published numbers are test-split numbers"
    return None


def _unknown(measured: Measured | None) -> str | None:
    if measured is None:
        return "what this run was measured on is not stated"
    missing = [name for name, value in (
        ("its split protocol", measured.protocol), ("the split evaluated", measured.split),
        ("its labels version", measured.labels), ("the number of images", measured.num_images),
        ("the number of official test images", measured.num_official_test)) if value is None]
    return f"{', '.join(missing)} not stated" if missing else None


# A protocol whose test split is of another's kind: `official_images` differs from `official` in its train/val cut
# only; a re-sampling is a random patient-level split.
_TEST_SPLIT_OF = {"official_images": OFFICIAL, "resample": RANDOM}


def comparison(result: Published, measured: Measured | None) -> tuple[str, str]:
    """(verdict, why) for a run's numbers measured on `measured` beside `result`. Verdicts: "like-for-like" (real
    release, official split, same labels: the same test images and truth), "same protocol" (real release, both random
    splits, same labels: other test patients), "not comparable" (a fact differs, or the source does not state it) and
    "unknown" (a fact of the run is not stated; a known difference still makes it "not comparable")."""
    mismatch = run_mismatch(measured)
    if mismatch is None and measured is not None:
        if result.split == UNSTATED:
            mismatch = "the source does not state its split"
        elif measured.protocol is not None and _TEST_SPLIT_OF.get(measured.protocol, measured.protocol) != result.split:
            mismatch = f"{result.split} split, this run {measured.protocol}"
        elif result.labels == UNSTATED:
            mismatch = "the source does not state its labels version"
        elif measured.labels is not None and measured.labels != result.labels:
            mismatch = f"{result.labels} labels, this run {measured.labels}"
    if mismatch is not None:
        return "not comparable", mismatch
    unknown = _unknown(measured)
    if unknown is not None:
        return "unknown", unknown
    if result.split == OFFICIAL:
        return "like-for-like", "same test images, same labels"
    return "same protocol", "random splits of the same release and labels, other test patients"


def comparable(result: Published, measured: Measured | None) -> str:
    """`comparison`'s verdict alone."""
    return comparison(result, measured)[0]
