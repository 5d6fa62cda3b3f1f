"""Where applications meet aigov: guards for the SDKs they already call models with."""
