from builder.launch import main

main()
