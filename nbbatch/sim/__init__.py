"""The simulator: the Gemini, OpenAI, Stability and OpenRouter image APIs with latency and
fault injection, served over sockets (`nbbatch simulate`) or in-process (the `simulator`
provider).

The core of nbbatch never imports this package; the `simulator` provider reaches it through
the provider registry, by name, like any other provider.
"""

from nbbatch.sim.apis import simulator_core
from nbbatch.sim.options import SimulatorOptions, parse_faults
from nbbatch.sim.server import SimulatorServer, serve

__all__ = ["SimulatorOptions", "SimulatorServer", "parse_faults", "serve", "simulator_core"]
