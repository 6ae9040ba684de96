from natter.cli import main

main()
