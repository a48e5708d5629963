"""Layer 5, what runs stand on: the device mesh and multi-host start-up (`sharding`), and the Orbax checkpoints of a
run directory (`checkpoint`). Below evaluation and training, which both restore and shard."""
