"""Governance of an agent's tool calls: the capability evaluator, enforcement, task context,
credentials, capability maps, the project file and the audit trail.

Everything here is private; the public names live in ``oculus_lite.evaluator``,
``oculus_lite.context``, ``oculus_lite.audit`` and ``oculus_lite.exceptions``. The client
plugs in through the ``Governed`` protocol of ``_state`` (one immutable ``AgentState``
snapshot per token/map/credential change).
"""
