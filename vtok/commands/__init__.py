"""vtok's own subcommands (everything that is not LightningCLI's fit/validate/test/predict)."""
