from services.complaints.main import main

main()
