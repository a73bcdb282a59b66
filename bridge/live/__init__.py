"""The live daemon, one job a module:

    serve        the process: config from flags, engine, sinks, control, signals, the exit report
    daemon       the worker loop (window -> engine -> shaping -> outputs) and the modes
    intake       the input's raw blocks -> 16 kHz ring, onsets, arrival times (for latency figures)
    capture      trigger/manual capture: when a window is due, cut from the ring
    shaping      continuous mode as pure functions: hops, smoothing, deadband, rate limit, pitch resend
    refinetrack  which refined answer is still current, and its counts
    report       counters, percentiles, /synthmatch/status and the status line
    config       the daemon's TOML (configs/bridge.toml), typed and validated
    control      the OSC control server and the command queue (oscdecode: the bounded OSC parser;
                 footswitch: the MIDI footswitch)
    refiner      refinement by re-rendering, in a child process

Imports core, audio, engines and outputs; the refiner's child process alone imports synthmatch.training
(the train extra), by name, when refinement is asked for.
"""
