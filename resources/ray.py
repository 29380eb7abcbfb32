"""The `ray` resource: where compute runs. Built on dagster-ray's `LocalRay` (its lifecycle: create, wait, connect
at step start; disconnect at the end), with tradecast's cluster choice:

- ``address`` (or ``$RAY_ADDRESS``): an existing cluster (``ray://head:10001`` through Ray Client, or ``host:6379``
  from a node of it, e.g. a KubeRay head service);
- empty: this home's local head on 127.0.0.1 (`compute.cluster.local_head`), started on first use with
  ``num_cpus`` / ``num_gpus`` and shared by every run of this home.
"""

import os

from dagster_ray import LocalRay
from pydantic import Field, PrivateAttr

from resources.settings import Settings


class RayCluster(LocalRay):
    """Ray for trainings and searches: a local head by default, an existing cluster by address."""

    settings: Settings
    address: str | None = Field(None, description="existing cluster (ray://host:10001 or host:port); empty: "
                                "$RAY_ADDRESS, else this home's local head on 127.0.0.1")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local head (empty: this machine's)")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of the local head (empty: the visible CUDA devices)")
    cpus_per_training: float = Field(1.0, gt=0, description="CPU slots one training or search trial takes")
    gpus_per_training: float = Field(0.0, ge=0, description="GPUs one training takes (1 on a GPU cluster)")

    _address: str | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return "tradecast-ray"

    @property
    def target(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None

    @property
    def ray_address(self) -> str | None:  # type: ignore[override]
        return self._address

    @property
    def created(self) -> bool:
        return self._address is not None

    def create(self, context) -> None:
        """Find the cluster: the given address, or this home's local head (started when none runs)."""
        from compute.cluster import auth_env, local_head

        if self.target is not None:
            self._address = self.target
            return
        os.environ.update(auth_env(str(self.settings.root)))
        self._address = local_head(str(self.settings.root), num_cpus=self.num_cpus, num_gpus=self.num_gpus).address

    def connect(self, context):
        """``ray.init`` against the cluster found by `create` (once per process: later steps reuse it)."""
        import ray

        if not ray.is_initialized():
            ray.init(address=self._address, **{"log_to_driver": False, "namespace": "tradecast",
                                               "logging_level": "WARNING", **self.ray_init_options})
        self._context = ray.get_runtime_context()
        return self._context

    def cleanup(self, context, exception) -> None:
        """Leave the connection (and the shared head) up: the process ends soon, and the next step reuses it."""
        self._context = None
        super().cleanup(context, exception)

    def resources(self) -> dict[str, float]:
        """What one training asks of the cluster."""
        return {"num_cpus": self.cpus_per_training, "num_gpus": self.gpus_per_training}


def ray_cluster_resource(settings: Settings) -> RayCluster:
    return RayCluster(settings=settings, lifecycle={"cleanup": "never"})

