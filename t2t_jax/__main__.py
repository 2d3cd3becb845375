from t2t_jax.cli import main

main()
