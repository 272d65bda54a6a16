"""The node daemon and what it serves: model manifests, offline model builders, engines and the service."""
