"""Many deployments behind one model (issue 22): which one a request goes to, its breaker, its quotas."""
