"""synthmatch.configs: the default contract, bridge config, synth profiles and training recipes, as
package data (read with importlib.resources: bridge.contract.CONFIG_DIR)."""
