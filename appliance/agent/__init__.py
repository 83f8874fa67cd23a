"""The call session: turn-taking, barge-in, LLM streaming, tools, the offline call flow."""
