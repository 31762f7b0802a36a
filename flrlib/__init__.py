"""flrlib: Follow-up Likelihood as Reward (Zhang et al., AAAI 2025), reproducible on a laptop.

Import direction (see README): base (paths, models, cache, data) <- core (chat, followups, scoring,
metrics) <- workflows (benchmarks, feedback, mining, align, judge, reporting) <- cli / reproduce / notebooks.
"""

from . import net

net.apply()  # under FLR_OFFLINE=1, switch the Hugging Face libraries offline too, before anything imports them

__version__ = "0.1.0"
