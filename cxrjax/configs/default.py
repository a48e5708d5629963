"""The base configuration: every field a run reads, with the values most paper rows share.

An experiment file (`experiments/<name>.py`) calls this `get_config()` and sets, in its own `get_config()`, every
value its paper row changes; its config arguments (`:smoke`, `:scratch`, the row's choices) are read by
`cxrjax.configs.arguments`. Any field can also be overridden on the command line, e.g.
`--config.optimizer.learning_rate=3e-4`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.data = ml_collections.ConfigDict()
    config.data.data_dir = "data"  # the --data-dir given to `cxrjax prepare`
    config.data.size = 256  # shard image side
    config.data.labels = "v2020"  # which Data_Entry CSV the shards were prepared from
    config.data.crop = 224  # random crop for training, centre crop for evaluation
    config.data.flip = True
    config.data.random_crop = True  # False: centre crop for training too
    config.data.rotation = 0.0  # training rotation range, ± degrees
    config.data.protocol = "official"  # official | official_images | random | resample | kfold (cxrjax.data.splits)
    config.data.split_seed = 0
    config.data.val_fraction = 0.2  # official: share of train_val held out for validation, by patient (by image)
    config.data.fractions = (0.7, 0.1, 0.2)  # random and resample protocols
    config.data.num_folds = 5  # kfold protocol
    config.data.fold = 0  # kfold: the test fold; resample: the re-sampling (random split, seed split_seed + fold)
    config.data.num_threads = 4  # grain reader threads per process
    config.data.num_workers = 0  # grain worker processes per host; 0: read in this process (README, "input")

    config.model = ml_collections.ConfigDict()
    config.model.name = "resnet18"  # a key of cxrjax.models.BACKBONES
    config.model.architecture = "classifier"  # classifier | fusion | bilinear | lse | fmsml | can (cxrjax.models)
    config.model.second_backbone = ""  # can: the second branch's backbone ("" = the same as name)
    config.model.reduce_channels = 0  # bilinear/fmsml: 1x1 reduction before the outer product; can: common width
    config.model.backbone_kwargs = ml_collections.ConfigDict()  # e.g. {"remat": True} for DenseNet
    config.model.dtype = "float32"  # compute dtype: float32 | bfloat16 (parameters and losses stay float32)
    # How uint8 pixels become the model's input: imagenet (3 channels, ImageNet mean/std) | xrv (1 channel in
    # [-1024, 1024], torchxrayvision's models; a `pretrained` file made from one needs it). cxrjax.models.preprocess
    config.model.input = "imagenet"
    config.model.predict_head = "logits"  # the head whose sigmoid is the prediction
    config.model.pretrained = ""  # variables from `cxrjax import-weights` (ImageNet or chest X-ray); "" = random init
    # True: building the run fails when neither `pretrained` nor `init_from` is given (the paper rows that start
    # from ImageNet set it; `:scratch` and `:smoke` clear it). False here: the default and demo train from random init.
    config.model.require_pretrained = False
    config.model.pretrained_second = ""  # can: weights for the second branch ("" = pretrained)
    config.model.init_from = ""  # a workdir whose best checkpoint initialises this run (staged training)
    config.model.require_init_from = False  # True: a later stage of a staged training; won't start without init_from
    config.model.frozen = ()  # top-level modules that get no update, e.g. ("backbone",)

    # {head: {loss, weight, kwargs}}: the training objective is the weighted sum over heads (cxrjax.losses).
    config.losses = ml_collections.ConfigDict({"logits": {"loss": "bce", "weight": 1.0, "kwargs": {}}})

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"  # adam (torch-style L2 weight decay) | adamw | sgd
    config.optimizer.learning_rate = 1e-4
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.999
    config.optimizer.momentum = 0.9  # sgd only
    config.optimizer.weight_decay = 0.0
    config.optimizer.schedule = "step"  # step | plateau (decay when the validation loss stops improving)
    config.optimizer.decay_factor = 0.1  # multiply the rate by this ...
    config.optimizer.decay_every_epochs = 3  # ... every this many epochs (step; 0: constant rate)
    config.optimizer.plateau_patience = 1  # ... after this many epochs without validation-loss improvement (plateau)

    config.batch_size = 32  # global, over all devices and hosts
    config.eval_batch_size = 64
    config.num_epochs = 10
    config.select_best_by = "val_mean_auc"  # the "best" checkpoint: val_mean_auc (highest) | val_loss (lowest)
    config.steps_per_epoch = 0  # 0: the whole training split each epoch; N: at most N steps (smoke runs)
    config.log_every_steps = 50
    # Stop the run as diverged when a step's loss exceeds this many times its running mean (an exponential mean over
    # ~100 steps, started by the first loss); a non-finite loss or non-finite parameters always stop it. 0: off.
    config.divergence_factor = 1e3
    config.prefetch_batches = 2  # global batches put on the devices ahead of the step (cxrjax.data.prefetch)
    return config

