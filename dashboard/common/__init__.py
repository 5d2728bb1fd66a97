"""What two or more pages use: the session's choice and the cached datasets, models and
predictions (`state`), URLs, memory stores, tables, images, the face picker, the clickable
gallery and reading clicks back, the run folders' state, and where runs live (`paths`)."""
