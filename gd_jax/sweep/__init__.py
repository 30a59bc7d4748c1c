"""Many networks as one program: the engine (``engine``, ``trainer``), storing and
reloading results (``results``), and the device mesh and multi-host gather (``mesh``)."""
