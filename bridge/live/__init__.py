"""The live daemon: its config, the loop (window -> engine -> shaping -> outputs), the control server and
the refiner. Imports core, audio, engines and outputs; the refiner's child process alone imports
synthmatch.training (the train extra), by name, when refinement is asked for.
"""
