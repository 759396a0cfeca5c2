"""Making the implementation plan.

:class:`OfflinePlanner` ("offline-planner") is deterministic: it reads the
improvement's category, type, description and implementation notes with explicit
patterns (images, ports, namespaces, sizes, schedules, selectors, alert
expressions) and looks up what the notes mention in the GitOps repository's own
manifests (the inventory), so "convert the Qdrant Deployment" finds Qdrant's image
and ports. What it cannot express as manifests (restart a K3s server, edit a
resource this system does not own) becomes a manual step, never a guess.

:class:`LLMPlanner` asks the improvement's expert for the same typed plan as
structured output; its answer passes the same rendering, schema and policy checks.

Split by concern: :mod:`.inventory`, :mod:`.extraction`, :mod:`.offline`, :mod:`.llm`.
"""

from cortex_school.workers.planning.extraction import *  # noqa: F403
from cortex_school.workers.planning.inventory import *  # noqa: F403
from cortex_school.workers.planning.llm import *  # noqa: F403
from cortex_school.workers.planning.offline import *  # noqa: F403
