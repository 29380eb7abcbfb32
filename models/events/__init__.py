"""News and macro events as model features: the feature spec (`spec`), the batch features (`features`), the online
state the service updates per bar and headline (`online`), the asset page report (`report`) and the plain vs
event-aware ablation benchmark (`ablation`)."""
