"""Reading digits from real images: decode (image), find the ink and make MNIST crops (normalize), cut a line
into digits (segment), and the Recognizer that puts them together with a model (recognizer)."""

DEFAULT_THRESHOLD = 0.3  # abstain below this confidence; chosen on a development set (read_sets.py --seed 12345)
