from nbbatch.cli import main

main()
