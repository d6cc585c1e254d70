"""
Integrations with other libraries, one module each, imported on demand.

:mod:`nodemetrics.integrations.stamina` counts stamina's retries;
:mod:`nodemetrics.integrations.langgraph` meters every node of a LangGraph
graph.
"""
