"""leadscore."""
