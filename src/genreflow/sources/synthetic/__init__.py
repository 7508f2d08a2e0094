"""The synthetic source: a self-contained, deterministic generator of a GTZAN-layout corpus.

It exists so the whole pipeline runs, and is tested, anywhere: no download, no network, no
licence question, and the same seed always gives byte-identical WAV files (each clip's random
stream depends only on ``(seed, genre, index)``). The clips are music-like and deliberately
not trivially separable, so the model and its metrics behave much as on real GTZAN.

Modules, from the bottom up:

- :mod:`.dsp`: signal-processing primitives (oscillators, filters, envelopes);
- :mod:`.theory`: scales, chords, progressions, the swung time grid, melodies;
- :mod:`.instruments`: pitched timbres and the voice that plays them;
- :mod:`.drums`: per-clip drum kits;
- :mod:`.styles`: the genre recipes and the confusion graph that blends them;
- :mod:`.arrange`: from a recipe to a clip plan and rendered instrument buses;
- :mod:`.mix`: mixing and mastering;
- :mod:`.corpus`: the entry point, :func:`.corpus.generate_corpus`, which writes
  ``genres/<genre>/<genre>.000NN.wav``.

Nothing is re-exported here: callers import from the module they need
(``from genreflow.sources.synthetic.corpus import generate_corpus``), so importing one part
does not pull in numpy, scipy and every other module.
"""
