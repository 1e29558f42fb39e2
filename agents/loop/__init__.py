r"""Internal (the public surface is `import tierflow`).

The escalation loop, one module per part (the tiered graph's shape is in `graphs.builder`):

    router -> step (attempt + verdict) -> next step ... -> end (final output written)
                 ^        |  \-> act (a verified tool call) -> next step
                 |        |  \-> human_review (the top tier failed) -> next step | end
                 +--------+  retry on the same tier, escalate, fall back

* `step`: one attempt of a step on the tier its escalation state names, judged in the same
  node (one checkpoint per attempt and its verdict);
* `verify`: the checks, then pass (commit, go on), retry, escalate, or stop at a human;
* `act`: run a verified tool call (after a human's yes where needed);
* `review`: the human's approve / edit / reject;
* `ladder`: the escalation rules as pure functions (retry, escalate, fallback, budgets);
* `common`: node names, the escalation state, `commit_and_advance` and `stop_for_error`;
* `events`: the typed set of event kinds.
"""

from tierflow.agents.loop.act import make_act_node
from tierflow.agents.loop.review import make_human_review_node
from tierflow.agents.loop.step import make_step_node
from tierflow.agents.loop.verify import JudgeVerdict, make_verifier

__all__ = ["make_step_node", "make_verifier", "make_act_node", "make_human_review_node", "JudgeVerdict"]
