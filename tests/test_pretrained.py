"""ImageNet weights end to end: `cxrjax import-weights` → `config.model.pretrained` → the run's initial state."""

import numpy as np
import pytest

from cxrjax import cli
from cxrjax.configs import default
from cxrjax.training.run import build_run

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _config(data_dir, pretrained):
    config = default.get_config()
    config.data.data_dir, config.data.size, config.data.crop = data_dir, 32, 32
    config.batch_size, config.model.pretrained = 16, pretrained
    return config


def test_imported_weights_become_the_initial_state(prepared_shards, tmp_path, capsys):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)  # ImageNet layout, 1000 classes, random weights
    source = tmp_path / "resnet18.npz"
    np.savez(source, **{k: v.numpy() for k, v in reference.state_dict().items()})
    out = tmp_path / "resnet18.msgpack"
    assert cli.main(["import-weights", str(source), "--model", "resnet18", "--out", str(out)]) == 0
    assert "pretrained" in capsys.readouterr().out

    run = build_run(_config(prepared_shards[0], str(out)))
    conv1 = np.asarray(run.state.params["backbone"]["conv1"]["kernel"])
    assert np.array_equal(conv1, reference.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
    running_var = np.asarray(run.state.batch_stats["backbone"]["layer4_1"]["bn2"]["var"])
    assert np.array_equal(running_var, reference.layer4[1].bn2.running_var.numpy())
    assert run.state.params["fc"]["kernel"].shape == (512, 14)  # 1000 ImageNet classes → a fresh 14-way head

    wrong_model = _config(prepared_shards[0], str(out))
    wrong_model.model.name = "resnet34"
    with pytest.raises(ValueError, match="does not hold this model's variables"):
        build_run(wrong_model)
