"""The live daemon, one job a module:

    serve        the process: config from flags, engine, sinks, control, signals, the exit report
    daemon       the worker loop (window -> engine -> matcher -> shaping -> outputs) and the modes
    intake       the input's raw blocks -> 16 kHz ring, onsets, arrival times (for latency figures)
    capture      trigger/manual capture: when a window is due, cut from the ring
    inference    the engine's call on a window; engine errors, the fallback engine, giving up (exit 2)
    judge        refine: the network's answer judged by synthesis (the matcher), counted
    follow       continuous.follow = "held": the held matcher, its gate and the network's seeds
    shaping      continuous mode as pure functions: hops, smoothing, deadband, rate limit, pitch resend
    outlet       updates and note-offs to every sink, counted; the newest update
    report       counters, percentiles, /synthmatch/status, the status line, an exception as one line
    config       the daemon's TOML (configs/bridge.toml), typed and validated
    control      the OSC control server and the command queue (oscdecode: the bounded OSC parser;
                 footswitch: the MIDI footswitch)

Imports core, audio, engines, outputs and match (the matcher judges each answer by synthesis, torch-free);
never synthmatch.training.
"""
