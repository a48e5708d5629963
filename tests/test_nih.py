"""NIH metadata parsing: both CSV versions, split lists, boxes; bad rows reported, not fatal."""

import numpy as np

from conftest import shared_data
from cxrjax.data import nih
from cxrjax.data.findings import FINDINGS


def test_v2020_and_2017_csvs_parse_to_the_same_images():
    v2020, rejected_v2020 = nih.read_data_entry(shared_data("nih", "Data_Entry_2017_v2020.csv.gz"))
    old, rejected_old = nih.read_data_entry(shared_data("nih", "Data_Entry_2017.csv.gz"))
    assert len(v2020) == len(old) == 112_120 and not rejected_v2020 and not rejected_old
    assert {e.image_index for e in v2020} == {e.image_index for e in old}  # same images, rows ordered differently
    assert len({e.patient_id for e in v2020}) == 30_805
    by_name = {e.image_index: e for e in old}
    first = by_name["00000001_000.png"]  # 2017 row: 000,00000001,058Y,M,PA
    assert (first.follow_up, first.patient_id, first.age, first.sex, first.view) == (0, 1, 58.0, "M", "PA")
    differing = sum(not np.array_equal(a.labels, by_name[a.image_index].labels) for a in v2020)
    assert differing == 181  # the release notes: 181 images relabelled in v2020
    assert sum(e.age > 100 for e in old) == 16
    fractional = [e.age for e in old if e.age != int(e.age)]  # ages given in months or days (`011M`, `005D`)
    assert fractional and max(fractional) < 10


def test_split_lists_and_boxes():
    train_val = nih.read_image_list(shared_data("nih", "train_val_list.txt"))
    test = nih.read_image_list(shared_data("nih", "test_list.txt"))
    assert (len(train_val), len(test)) == (86_524, 25_596) and not set(train_val) & set(test)
    boxes = nih.read_boxes(shared_data("nih", "BBox_List_2017.csv.gz"))
    assert len(boxes) == 984 and len({b.image_index for b in boxes}) == 880
    assert {b.finding for b in boxes} <= set(FINDINGS) and any(b.finding == "Infiltration" for b in boxes)


def test_bad_rows_are_rejected_with_reasons(tmp_path):
    path = tmp_path / "Data_Entry.csv"
    path.write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\r\n"
        "a.png,Mass|Nodule,0,1,058Y,F,AP\r\n"
        "b.png,Cancer,0,2,40,M,PA\r\n"
        "c.png,No Finding,0,3,abc,M,PA\r\n"
        "d.png,No Finding,0,4,011M,X,PA\r\n"
        "a.png,Mass|Nodule,0,1,58,F,AP\r\n"
        "e.png,No Finding,0,5,30,M,PA\r\n"
        "e.png,Mass,0,5,30,M,PA\r\n")
    entries, rejected = nih.read_data_entry(path)
    assert [e.image_index for e in entries] == ["a.png"]  # its second row says the same: one entry
    assert entries[0].findings == ("Mass", "Nodule") and entries[0].age == 58.0
    reasons = dict(rejected)
    assert set(reasons) == {"b.png", "c.png", "d.png", "a.png", "e.png"}
    assert "Cancer" in reasons["b.png"] and "age" in reasons["c.png"] and "sex" in reasons["d.png"]
    assert reasons["a.png"] == nih.DUPLICATE_ROW
    assert reasons["e.png"] == f"{nih.CONFLICTING_ROWS} (lines 7, 8)"  # rows that disagree: no entry


def test_age_units():
    assert nih.parse_age("058Y") == 58 and nih.parse_age("57") == 57
    assert nih.parse_age("006M") == 0.5 and abs(nih.parse_age("073D") - 0.2) < 1e-12
