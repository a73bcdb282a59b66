"""The daemon's notes: which note each analysed window plays, and the model run at that note.

    NoteSettings   the [notes] table of the daemon's TOML
    NoteTracker    continuous mode: a held note with hysteresis (vibrato does not re-trigger it)
    NoteStage      detection per window (bridge.pitch) + inference with note normalisation
                   (bridge.notenorm): snapshot(window, m), track(window), infer(engine, window, est),
                   infer_full (also the model's extra outputs, where they describe this window)

Snapshots (trigger, manual) detect over the captured part of their window (from the onset); every
snapshot starts a note. Continuous mode detects over the newest track_s of each hop's window, so a
sung change is heard within one hop, and NoteTracker moves the held note only when the pitch leaves
it by more than 0.5 + hysteresis semitones; an unpitched hop keeps the held note, the silence gate
ends it. The window is normalised by the detected note (snapshots) or the held note (continuous).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from synthmatch.bridge.audio import notenorm
from synthmatch.bridge.audio.pitch import NoteEstimate, PitchSettings, detect

log = logging.getLogger("synthmatch.notes")


@dataclass
class NoteSettings:
    detect: bool = True  # detect each window's note (off: every update carries fallback_note)
    normalise: str = "off"  # off | full | pitch: how the C4 model hears other notes (bridge/audio/notenorm.py)
    fallback_note: int = 60  # MIDI note for silent or unpitched input (C4)
    min_confidence: float = 0.5  # voicing confidence below this = unpitched
    f_min: float = 40.0  # Hz, lowest f0 searched
    f_max: float = 2000.0  # Hz, highest f0 searched
    track_s: float = 0.3  # continuous: the note is detected on the newest track_s of the window
    hysteresis: float = 0.6  # continuous: semitones beyond the held note's +-0.5 before it changes

    def pitch(self) -> PitchSettings:
        return PitchSettings(
            fallback_note=self.fallback_note, f_min=self.f_min, f_max=self.f_max, min_confidence=self.min_confidence
        )

    def check(self, where: str = "notes") -> None:
        """ValueError naming the key."""
        if self.normalise not in notenorm.NORMALISE_MODES:
            raise ValueError(f"{where}.normalise = {self.normalise!r}: one of {', '.join(notenorm.NORMALISE_MODES)}")
        if not 0.05 <= self.track_s <= 4.0:
            raise ValueError(f"{where}.track_s = {self.track_s}: between 0.05 and 4 s")
        if not 0.0 <= self.hysteresis <= 12.0:
            raise ValueError(f"{where}.hysteresis = {self.hysteresis}: between 0 and 12 semitones")
        self.pitch().check(where)


class NoteTracker:
    """Held note with hysteresis: update(est) -> (held note or None, changed)."""

    def __init__(self, hysteresis: float):
        self.hysteresis = hysteresis
        self.held: int | None = None

    def update(self, est: NoteEstimate) -> tuple[int | None, bool]:
        if not est.voiced:
            return self.held, False  # an unpitched moment (a consonant, a breath) keeps the note
        if self.held is None or abs(est.midi - self.held) > 0.5 + self.hysteresis:
            self.held = int(np.clip(round(est.midi), 0, 127))
            return self.held, True
        return self.held, False

    def end(self) -> bool:
        """The note stops (silence): True if one was held."""
        was, self.held = self.held is not None, None
        return was


class NoteStage:
    def __init__(self, settings: NoteSettings, contract):
        self.s, self.contract = settings, contract
        self.sr = contract.audio.sample_rate
        self.pitch_settings = settings.pitch()
        self.tracker = NoteTracker(settings.hysteresis)
        self.fallbacks = 0  # windows whose note fell back (silent or unpitched)

    def _detect(self, x: np.ndarray) -> NoteEstimate:
        if not self.s.detect:
            fb = self.s.fallback_note
            return NoteEstimate(fb, None, float(fb), 0.0, False, "detection off")
        est = detect(x, self.sr, self.pitch_settings)
        if not est.voiced:
            self.fallbacks += 1
            if self.fallbacks <= 10 or self.fallbacks % 100 == 0:  # continuous mode: do not flood
                log.info(
                    "no note heard (%s): using the fallback note %d (%d times so far)",
                    est.reason,
                    est.note,
                    self.fallbacks,
                )
        return est

    def snapshot(self, window: np.ndarray, m: int) -> NoteEstimate:
        """The note of a captured window whose first m samples are audio (the rest zero-padding)."""
        return self._detect(window[: max(m, 1)])

    def track(self, window: np.ndarray) -> tuple[NoteEstimate, int | None, bool]:
        """Continuous: (estimate on the newest track_s, held note, whether the held note changed)."""
        est = self._detect(window[-int(self.s.track_s * self.sr) :])
        held, changed = self.tracker.update(est)
        return est, held, changed

    def infer_full(self, engine, window: np.ndarray, note: int | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """As `infer`, plus the model's extra outputs for this window ({name: (rows, k)}, e.g. the pitch
        head's top classes) when the values are the model's own answer for it: a model told the note, or
        a C4-only one hearing the raw window ("off", or the reference note). {} otherwise (the window
        normalised to C4: its classes describe another note) and for models without extras, whose values
        are infer's."""
        ref = self.contract.audio.note
        if not engine.meta.extra_outputs:
            return self.infer(engine, window, note), {}
        if engine.meta.takes_note:
            values, extras = engine.infer_full(window.reshape(1, -1), [ref if note is None else note])
        elif self.s.normalise == "off" or note is None or note == ref:
            values, extras = engine.infer_full(window.reshape(1, -1))
        else:
            return self.infer(engine, window, note), {}
        return values[0], {name: x[0] for name, x in extras.items()}

    def infer(self, engine, window: np.ndarray, note: int | None) -> np.ndarray:
        """(num_samples,) window at MIDI `note` (None: the reference note) -> (16,) raw model output.

        A model told the note (engine.meta.takes_note) hears the raw window and the note. A C4-only
        model: "pitch": the raw and the normalised window as one batch of 2; "full": the normalised one
        alone; "off", or a window at the reference note: the raw one alone."""
        mode = self.s.normalise
        ref = self.contract.audio.note
        if engine.meta.takes_note:
            return engine.infer(window.reshape(1, -1), [ref if note is None else note])[0]
        if mode == "off" or note is None or note == ref:
            return engine.infer(window.reshape(1, -1))[0]
        x, s = notenorm.to_reference(window, note, self.contract)
        if mode == "full":
            return notenorm.from_reference(np.clip(engine.infer(x[None])[0], 0, 1), s, self.contract)[0]
        raw, norm = engine.infer(np.stack([window.astype(np.float32), x]))
        if not (np.all(np.isfinite(raw)) and np.all(np.isfinite(norm))):
            return raw if not np.all(np.isfinite(raw)) else norm  # let the daemon's output check refuse it
        back, _ = notenorm.from_reference(np.clip(norm, 0, 1), s, self.contract)
        return notenorm.combine(raw, back, self.contract, "pitch")
