"""Training: the knowledge base in memory, ``tf.data`` pipelines, epoch checkpoints, stratified k-fold and the
run model, metrics and figures. The entry point is :func:`lenssearch.train.kfold.train_network`."""
