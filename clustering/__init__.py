"""Audio, manifests, teacher features, k-means units, labels and their quality. Imports nothing of ours."""
