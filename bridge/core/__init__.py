"""The bottom layer: what every other part shares, and nothing of torch or audio hardware.

errors (UsageError: one line for the user, exit 2), contract (the 16 parameters, audio window, front-end
settings, hashed), frontend (the numpy reference of the models' front-ends), modelfile (an exported model's
metadata and the contract check), loader (TOML tables into typed dataclasses, unknown keys refused), names
(pick a device or port by exact name, else a unique substring), argtypes, tomlfile, atomic writes, digest
(file sha256), audiofile, outpaths, childproc. Imports nothing else of synthmatch.
"""
