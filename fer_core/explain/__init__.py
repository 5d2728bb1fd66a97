"""Looking inside a model: saliency methods (`attribution`) and the checks of which to trust
(`trust`), a confusion cell's mean saliency, activation maximization of filters (`filters`) and
their real-face statistics, embeddings of a split, and the images that show them."""
