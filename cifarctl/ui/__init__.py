"""Everything drawn with rich or plotext: ``train_view`` (train's live view), ``compare_view``,
``tables`` (models, recipes, data, summary, eval, lr-find), ``charts`` (every plotext chart),
``gallery`` (misclassified) and ``images`` (half-block pictures). No torch here."""
