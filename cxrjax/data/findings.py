"""The 14 ChestX-ray14 findings in canonical order (the CSV's spelling).

Every array of labels, logits or probabilities in cxrjax uses this order, so a column index means the same finding
everywhere: shards, models, predictions.csv and metrics.json.
"""

FINDINGS = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NUM_FINDINGS = len(FINDINGS)
NO_FINDING = "No Finding"
FINDING_INDEX = {name: i for i, name in enumerate(FINDINGS)}
