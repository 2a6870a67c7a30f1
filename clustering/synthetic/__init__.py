"""The built-in synthetic speech corpus: espeak-ng voices, phrases, phone alignments."""
